use super::*;

#[test]
fn ids_order_by_message_then_index() {
    assert!(event_id(0, 1, 4095) < event_id(0, 2, 0));
    assert!(
        event_id(0, 1 << 30, 0) < event_id(1, 1, 0),
        "a later epoch is later"
    );
    assert_eq!(seq_of(event_id(3, 7, 3)), 7);
    assert_eq!(epoch_of(event_id(3, 7, 3)), 3);
    assert_eq!(epoch_in(Some("tidings log, epoch 12")), 12);
    let mut payload = BytesMut::new();
    for e in [&b"ab"[..], b"", b"xyz"] {
        payload.put_u32(e.len() as u32);
        payload.extend_from_slice(e);
    }
    assert_eq!(split(&payload), vec![&b"ab"[..], b"", b"xyz"]);
    assert!(split(&payload[..5]).is_empty(), "a cut entry is not read");
}

#[test]
fn a_message_of_several_publishes_gives_each_event_its_publish() {
    let mut shared = async_nats::HeaderMap::new();
    shared.insert("Tidings-Origins", "n1:4=2,n2:9=1");
    let got = origins_of(&shared, 3);
    let want: Vec<Option<Vec<u8>>> = ["n1:4", "n1:4", "n2:9"]
        .iter()
        .map(|o| Some(o.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, want);
    let mut single = async_nats::HeaderMap::new();
    single.insert("Tidings-Origin", "n1:5");
    assert_eq!(origins_of(&single, 2), vec![Some(b"n1:5".to_vec()); 2]);
    // A list shorter than the payload leaves the rest without an origin.
    assert_eq!(origins_of(&shared, 4)[3], None);
}
