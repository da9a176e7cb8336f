//! A new subscriber: admitted against the limits and registered under the fan-out lock, where
//! its replay range and its live queue meet.

use super::*;

impl Inner {
    /// Admits and registers a subscriber, deciding where its replay ends and its live queue
    /// starts under the fan-out lock.
    pub fn subscribe(self: &Arc<Self>, spec: SubscribeSpec) -> Result<Subscription, Limit> {
        let limits = Limits {
            total: self.config.max_connections,
            per_user: self.config.max_connections_per_user,
            per_ip: self.config.max_connections_per_ip,
        };
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let client_id: Arc<str> = Arc::from(format!("{key:x}-{:08x}", rand::random::<u32>()));
        let mut prelude = BytesMut::with_capacity(256);
        prelude.extend_from_slice(&tidings_wire::encode_retry(
            u64::try_from(self.config.retry.as_millis()).unwrap_or(u64::MAX),
        ));
        let connected = format!("{{\"clientId\":\"{client_id}\"}}");
        let connected = tidings_wire::Event::new(&connected).with_event("connected");
        let _ = connected.encode_into(&mut prelude);

        let fanned_out = self.fanned_out.lock();
        let mut registry = self.registry.write();
        // Checked under the registry lock that `drain` iterates under: a stream is either
        // refused here or registered before `drain` looks, so none is left open.
        if self.is_draining() {
            return Err(Limit::Draining);
        }
        if let Err(limit) = registry.admit(limits, spec.user.as_deref(), spec.ip) {
            self.metrics.rejected_limit.inc();
            return Err(limit);
        }
        let newest = *fanned_out;
        let floor = self.history.bounds().floor;
        let mut replay = None;
        // Where the subscriber's position is kept (no reset): the tasks snapshot skips what
        // its replay brings.
        let mut resumed_at = None;
        if let Some(given) = spec.last_event_id.as_deref().filter(|s| !s.is_empty()) {
            let reason = match EventId::parse(given) {
                None => Some("unknown-id"),
                Some(id) if id > newest => Some("unknown-id"),
                Some(id) if id < floor => Some("history-gap"),
                Some(id) => {
                    if id < newest {
                        replay = Some((id, newest));
                    }
                    resumed_at = Some(id);
                    None
                }
            };
            if let Some(reason) = reason {
                let data =
                    serde_json::json!({ "reason": reason, "lastEventId": given }).to_string();
                let newest_text = newest.to_string();
                let _ = tidings_wire::Event::new(&data)
                    .with_event("reset")
                    .with_id(&newest_text)
                    .encode_into(&mut prelude);
                if reason == "unknown-id" {
                    self.metrics.resets_unknown_id.inc();
                } else {
                    self.metrics.resets_history_gap.inc();
                }
            }
        }
        // The live tasks this subscriber may see, as of `newest`.
        self.tasks.snapshot(
            &spec.patterns,
            spec.user.as_deref(),
            resumed_at,
            &mut prelude,
        );
        let mut conn = Conn::new(
            key,
            client_id,
            spec.user,
            spec.ip,
            spec.patterns.into(),
            spec.exp,
            self.config.queue_bytes,
            newest,
        );
        conn.protocol = spec.protocol;
        let conn = Arc::new(conn);
        registry.insert(Arc::clone(&conn));
        self.open_streams.set(registry.conns.len());
        drop(registry);
        if let Some(exp) = conn.exp {
            self.expiring.lock().insert((exp, conn.key));
        }
        drop(fanned_out);
        self.system_connected(&conn);
        if replay.is_some() {
            self.metrics.replays.inc();
        }
        self.metrics.connections_opened.inc();
        Ok(Subscription::new(
            Arc::clone(self),
            conn,
            Stream::new(prelude.freeze(), replay),
        ))
    }
}
