//! Following a redirect: which statuses, where to (a `Location` resolved against the request
//! URL, RFC 3986 section 5), with which method, and which headers must not travel to another
//! origin. Pure functions, no I/O.

use http::{header, HeaderMap, Method, StatusCode, Uri};

/// The statuses the client follows: 301, 302, 303, 307 and 308.
pub(crate) fn is_followed(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The method of the next request, as `fetch` does it: 303 turns anything but `HEAD` into
/// `GET`; 301 and 302 turn `POST` into `GET`; 307 and 308 keep the method (and the body).
pub(crate) fn next_method(status: StatusCode, method: &Method) -> Method {
    match status.as_u16() {
        303 if method != Method::HEAD => Method::GET,
        301 | 302 if method == Method::POST => Method::GET,
        _ => method.clone(),
    }
}

/// Whether two URLs share scheme, host and port. Credentials never cross origins.
pub(crate) fn same_origin(a: &Uri, b: &Uri) -> bool {
    a.scheme() == b.scheme()
        && a.host().map(str::to_ascii_lowercase) == b.host().map(str::to_ascii_lowercase)
        && a.port_u16() == b.port_u16()
}

/// Removes the headers that carry credentials, before a request goes to another origin.
pub(crate) fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::COOKIE);
    headers.remove(header::PROXY_AUTHORIZATION);
}

/// Resolves a `Location` value against the URL of the request that received it.
pub(crate) fn resolve(base: &Uri, location: &str) -> Result<Uri, String> {
    let location = location.trim();
    // The fragment is for the browser's address bar; it is never sent.
    let location = location.split_once('#').map_or(location, |(l, _)| l);
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base
        .authority()
        .map(|a| a.as_str())
        .ok_or("the request URL has no host")?;
    let base_path = base.path();

    let resolved = if has_scheme(location) {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        let (path, query) = split_query(location);
        format!("{scheme}://{authority}{}{query}", remove_dot_segments(path))
    } else if location.is_empty() {
        base.to_string()
    } else if location.starts_with('?') {
        format!("{scheme}://{authority}{base_path}{location}")
    } else {
        let (path, query) = split_query(location);
        let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
        let merged = remove_dot_segments(&format!("{dir}{path}"));
        format!("{scheme}://{authority}{merged}{query}")
    };
    let uri: Uri = resolved
        .parse()
        .map_err(|err| format!("invalid Location {location:?}: {err}"))?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(format!("Location {location:?} is not a URL with a host"));
    }
    Ok(uri)
}

/// RFC 3986: `scheme ":"` where the scheme is a letter then letters, digits, `+`, `-`, `.`.
fn has_scheme(reference: &str) -> bool {
    let Some((scheme, _)) = reference.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn split_query(reference: &str) -> (&str, &str) {
    match reference.find('?') {
        Some(i) => (&reference[..i], &reference[i..]),
        None => (reference, ""),
    }
}

/// RFC 3986 section 5.2.4, for an absolute path: `.` and `..` segments go away.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                // The first element is the empty string before the leading `/`: never popped.
                if out.len() > 1 {
                    out.pop();
                }
            }
            other => out.push(other),
        }
        if last && matches!(*segment, "." | "..") {
            out.push("");
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(base: &str, location: &str) -> String {
        let base: Uri = base.parse().expect("valid base");
        resolve(&base, location).expect("resolvable").to_string()
    }

    #[test]
    fn relative_locations_resolve_against_the_request_url() {
        let base = "http://h:8080/a/b/events?topic=x";
        assert_eq!(resolved(base, "http://o:1/p"), "http://o:1/p");
        assert_eq!(resolved(base, "//o/p?q=1"), "http://o/p?q=1");
        assert_eq!(resolved(base, "/root"), "http://h:8080/root");
        assert_eq!(resolved(base, "next"), "http://h:8080/a/b/next");
        assert_eq!(resolved(base, "../up?x=1"), "http://h:8080/a/up?x=1");
        assert_eq!(resolved(base, "./same/"), "http://h:8080/a/b/same/");
        assert_eq!(
            resolved(base, "?topic=y"),
            "http://h:8080/a/b/events?topic=y"
        );
        assert_eq!(resolved(base, "/x#frag"), "http://h:8080/x");
    }

    #[test]
    fn dot_segments_never_climb_above_the_root() {
        assert_eq!(remove_dot_segments("/../../x"), "/x");
        assert_eq!(remove_dot_segments("/a/.."), "/");
        assert_eq!(remove_dot_segments("/a/b/."), "/a/b/");
        assert_eq!(remove_dot_segments("/a/./b/../c"), "/a/c");
    }

    #[test]
    fn a_location_that_does_not_parse_is_an_error() {
        let base: Uri = "http://h/".parse().expect("valid base");
        assert!(resolve(&base, "http://bad host/").is_err());
        assert!(resolve(&base, "mailto:someone").is_err());
    }

    #[test]
    fn see_other_becomes_get_and_307_308_keep_the_method() {
        let post = Method::POST;
        let s = |c: u16| StatusCode::from_u16(c).expect("valid status");
        assert_eq!(next_method(s(303), &post), Method::GET);
        assert_eq!(next_method(s(301), &post), Method::GET);
        assert_eq!(next_method(s(302), &post), Method::GET);
        assert_eq!(next_method(s(307), &post), Method::POST);
        assert_eq!(next_method(s(308), &post), Method::POST);
        let report = Method::from_bytes(b"REPORT").expect("valid method");
        assert_eq!(next_method(s(302), &report), report);
    }

    #[test]
    fn origin_is_scheme_host_and_port() {
        let u = |s: &str| s.parse::<Uri>().expect("valid URL");
        assert!(same_origin(&u("http://H:80/a"), &u("http://h:80/b")));
        assert!(!same_origin(&u("http://h/a"), &u("http://h:81/a")));
        assert!(!same_origin(&u("http://h/a"), &u("http://g/a")));
    }
}
