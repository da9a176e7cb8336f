//! Who is connected and what each one listens to: the index the fan-out walks.
//!
//! Literal subscriptions are found by a hash lookup on the topic; wildcard subscriptions are
//! grouped by pattern so a publish tests each distinct pattern once, not each subscriber.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::conn::Conn;
use crate::event::StoredEvent;
use crate::topic::Pattern;

type Group = HashMap<u64, Arc<Conn>>;

/// Every live subscriber, indexed for delivery and for limits.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub conns: Group,
    literal: HashMap<Arc<str>, Group>,
    wild: HashMap<Pattern, Group>,
    users: HashMap<Arc<str>, Group>,
    per_ip: HashMap<IpAddr, usize>,
    /// Subscriptions per pattern text, for `/clients`.
    pattern_counts: HashMap<Arc<str>, usize>,
    pub subscriptions: usize,
}

/// Which limit a new stream would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Total,
    PerUser,
    PerIp,
    /// Not a limit: the hub started draining while the stream was being admitted.
    Draining,
}

/// The connection limits in force.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub total: usize,
    pub per_user: usize,
    pub per_ip: usize,
}

impl Registry {
    /// Whether one more stream for this user and address fits.
    pub fn admit(
        &self,
        limits: Limits,
        user: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<(), Limit> {
        if self.conns.len() >= limits.total {
            return Err(Limit::Total);
        }
        if let Some(user) = user {
            if self.users.get(user).map_or(0, HashMap::len) >= limits.per_user {
                return Err(Limit::PerUser);
            }
        }
        if let Some(ip) = ip {
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= limits.per_ip {
                return Err(Limit::PerIp);
            }
        }
        Ok(())
    }

    pub fn insert(&mut self, conn: Arc<Conn>) {
        for p in conn.patterns.iter() {
            let group = if p.is_literal() {
                self.literal.entry(Arc::from(p.as_str())).or_default()
            } else {
                self.wild.entry(p.clone()).or_default()
            };
            group.insert(conn.key, Arc::clone(&conn));
            *self
                .pattern_counts
                .entry(Arc::from(p.as_str()))
                .or_default() += 1;
            self.subscriptions += 1;
        }
        if let Some(user) = &conn.user {
            self.users
                .entry(Arc::clone(user))
                .or_default()
                .insert(conn.key, Arc::clone(&conn));
        }
        if let Some(ip) = conn.ip {
            *self.per_ip.entry(ip).or_default() += 1;
        }
        self.conns.insert(conn.key, conn);
    }

    /// Removes a connection; true when it was there.
    pub fn remove(&mut self, conn: &Conn) -> bool {
        if self.conns.remove(&conn.key).is_none() {
            return false;
        }
        for p in conn.patterns.iter() {
            if p.is_literal() {
                remove_from(&mut self.literal, p.as_str(), conn.key);
            } else {
                remove_from(&mut self.wild, p, conn.key);
            }
            remove_count(&mut self.pattern_counts, p.as_str());
            self.subscriptions -= 1;
        }
        if let Some(user) = &conn.user {
            remove_from(&mut self.users, &**user, conn.key);
        }
        if let Some(ip) = conn.ip {
            remove_count(&mut self.per_ip, &ip);
        }
        true
    }

    /// Calls `deliver` for every connection the event is for (a connection matched several
    /// ways is visited several times; [`Conn::enqueue`] drops the repeats by id).
    pub fn fanout(&self, event: &StoredEvent, mut deliver: impl FnMut(&Arc<Conn>)) {
        if event.broadcast {
            self.conns.values().for_each(&mut deliver);
            return;
        }
        for topic in event.topics.iter() {
            if let Some(group) = self.literal.get(&**topic) {
                group.values().for_each(&mut deliver);
            }
            for (pattern, group) in &self.wild {
                if pattern.matches(topic) {
                    group.values().for_each(&mut deliver);
                }
            }
        }
        for user in event.users.iter() {
            if let Some(group) = self.users.get(&**user) {
                group.values().for_each(&mut deliver);
            }
        }
    }

    /// Calls `deliver` for every connection subscribed to the concrete `topic` (one matched
    /// by several patterns is visited several times).
    pub fn for_topic(&self, topic: &str, mut deliver: impl FnMut(&Arc<Conn>)) {
        if let Some(group) = self.literal.get(topic) {
            group.values().for_each(&mut deliver);
        }
        for (pattern, group) in &self.wild {
            if pattern.matches(topic) {
                group.values().for_each(&mut deliver);
            }
        }
    }

    /// A connection by its client id.
    pub fn by_client_id(&self, client_id: &str) -> Option<&Arc<Conn>> {
        self.conns.values().find(|c| &*c.client_id == client_id)
    }

    /// Connections of one user.
    pub fn user_conns(&self, user: &str) -> Vec<Arc<str>> {
        self.users
            .get(user)
            .map(|g| g.values().map(|c| Arc::clone(&c.client_id)).collect())
            .unwrap_or_default()
    }

    /// A user's open streams here, and since when the oldest is open (Unix ms).
    pub fn presence(&self, user: &str) -> (usize, Option<u64>) {
        self.users.get(user).map_or((0, None), |g| {
            (g.len(), g.values().map(|c| c.opened_ms).min())
        })
    }

    /// Connection counts per user.
    pub fn user_counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.users.iter().map(|(u, g)| (&**u, g.len()))
    }

    /// Subscription counts per pattern.
    pub fn pattern_counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.pattern_counts.iter().map(|(p, n)| (&**p, *n))
    }
}

fn remove_from<K, Q>(map: &mut HashMap<K, Group>, key: &Q, conn: u64)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(group) = map.get_mut(key) {
        group.remove(&conn);
        if group.is_empty() {
            map.remove(key);
        }
    }
}

fn remove_count<K, Q>(map: &mut HashMap<K, usize>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}
