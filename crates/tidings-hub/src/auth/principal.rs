//! The authenticated party of a request and its permission checks.

use std::sync::{Arc, LazyLock};

use crate::topic::Pattern;

/// How a [`Principal`] was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// No credentials: only the public topics.
    Anonymous,
    /// A verified JWT.
    Token,
    /// A static `--publish-key`: publishes anything and is admin.
    PublishKey,
    /// No credentials in `--dev` mode: everything.
    Dev,
}

/// Who a request is and what it may do.
///
/// Permission checks are linear scans of short lists; they run once per request or
/// subscription, not per delivered event.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user id (`sub`): the connection also receives that user's events.
    pub sub: Option<Arc<str>>,
    /// Seconds since the Unix epoch at which the credentials expire (tokens only).
    pub exp: Option<u64>,
    /// Patterns this principal may subscribe within, public topics included.
    pub subscribe: Vec<Pattern>,
    /// Patterns this principal may publish to (users as `users/{id}`, broadcast as
    /// `broadcast`).
    pub publish: Vec<Pattern>,
    /// May call admin endpoints (`GET /clients`).
    pub admin: bool,
    pub kind: PrincipalKind,
}

fn everything() -> Vec<Pattern> {
    static ALL: LazyLock<Pattern> =
        LazyLock::new(|| Pattern::parse("**").expect("`**` is a valid pattern"));
    vec![ALL.clone()]
}

impl Principal {
    /// A request without credentials: it may subscribe to the public topics, nothing more.
    pub fn anonymous(public_topics: Vec<Pattern>) -> Self {
        Principal {
            sub: None,
            exp: None,
            subscribe: public_topics,
            publish: Vec::new(),
            admin: false,
            kind: PrincipalKind::Anonymous,
        }
    }

    /// A request without credentials in `--dev` mode: subscribes, publishes and is admin.
    pub fn dev() -> Self {
        Principal {
            sub: None,
            exp: None,
            subscribe: everything(),
            publish: everything(),
            admin: true,
            kind: PrincipalKind::Dev,
        }
    }

    /// A server-side publisher with a static key: it publishes to every topic, user and
    /// broadcast, and is admin. It subscribes like an anonymous client (the public topics):
    /// the key is for backends that push events, and a key that also read every stream would
    /// make a leak of it worse.
    pub fn publish_key(public_topics: Vec<Pattern>) -> Self {
        Principal {
            sub: None,
            exp: None,
            subscribe: public_topics,
            publish: everything(),
            admin: true,
            kind: PrincipalKind::PublishKey,
        }
    }

    /// Whether every topic `pattern` matches is within one of the subscribe patterns.
    pub fn may_subscribe(&self, pattern: &Pattern) -> bool {
        self.subscribe.iter().any(|grant| grant.covers(pattern))
    }

    /// Whether publishing to the concrete `topic` is allowed.
    pub fn may_publish_topic(&self, topic: &str) -> bool {
        self.publish.iter().any(|grant| grant.matches(topic))
    }

    /// Whether sending to `user` is allowed, checked as the topic `users/{user}`
    /// (see [`Pattern::matches_user`] for user ids that contain `/`).
    pub fn may_notify_user(&self, user: &str) -> bool {
        self.publish.iter().any(|grant| grant.matches_user(user))
    }

    /// Whether a broadcast is allowed, checked as the topic `broadcast`.
    pub fn may_broadcast(&self) -> bool {
        self.may_publish_topic("broadcast")
    }

    /// True for a request without credentials outside `--dev` mode.
    pub fn is_anonymous(&self) -> bool {
        self.kind == PrincipalKind::Anonymous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|s| Pattern::parse(s).unwrap()).collect()
    }

    fn pat(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn publish_permissions_treat_users_and_broadcast_as_topics() {
        let mut p = Principal::anonymous(vec![]);
        p.publish = pats(&["users/*"]);
        assert!(p.may_notify_user("alice") && p.may_notify_user("https://idp/u/1"));
        assert!(!p.may_publish_topic("orders/1") && !p.may_broadcast());
        p.publish = pats(&["broadcast"]);
        assert!(p.may_broadcast() && !p.may_notify_user("alice"));
        p.publish = pats(&["users/alice", "orders/*"]);
        assert!(p.may_notify_user("alice") && !p.may_notify_user("bob"));
        assert!(p.may_publish_topic("orders/1") && !p.may_publish_topic("orders/1/x"));
    }

    #[test]
    fn subscribe_permission_is_coverage_not_overlap() {
        let mut p = Principal::anonymous(vec![]);
        p.subscribe = pats(&["orders/*", "tenant/7/**"]);
        assert!(p.may_subscribe(&pat("orders/42")) && p.may_subscribe(&pat("orders/*")));
        assert!(p.may_subscribe(&pat("tenant/7/a/**")) && p.may_subscribe(&pat("tenant/7/*")));
        assert!(!p.may_subscribe(&pat("orders/**")) && !p.may_subscribe(&pat("tenant/*/a")));
        assert!(!p.may_subscribe(&pat("tenant/7")));
    }
}
