//! docs/tidings.service is a valid unit with its hardening options: `systemd-analyze verify`
//! accepts it (with ExecStart pointing at the binary under test, so the check that the
//! executable exists holds), and the options the deployment guide promises are in it.

mod support;

use std::process::Command;

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tidings.service"))
            .expect("docs/tidings.service");
    for option in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "LimitNOFILE=",
        "DynamicUser=yes",
        "KillSignal=SIGTERM",
        "ExecStart=/usr/local/bin/tidings serve",
    ] {
        assert!(unit.contains(option), "the unit lacks {option}");
    }
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        panic!("the unit test needs systemd-analyze (Debian package systemd; scripts/test installs it)");
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidings.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/tidings", support::hub::BINARY),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("tidings.service:"),
        "systemd-analyze verify: {stderr}"
    );
}
