//! The cluster suite (`tests/cluster/suite.rs`) on NATS JetStream (`nats-server -js`).

#[path = "cluster/faults.rs"]
mod faults;
#[path = "cluster/suite.rs"]
mod suite;
mod support;

use support::nats::Nats;

#[tokio::test]
async fn every_subscriber_on_every_node_gets_every_event_once_in_log_order() {
    suite::every_subscriber_on_every_node_gets_every_event_once_in_log_order::<Nats>().await;
}

#[tokio::test]
async fn a_last_event_id_from_one_node_resumes_on_every_node() {
    suite::a_last_event_id_from_one_node_resumes_on_every_node::<Nats>().await;
}

#[tokio::test]
async fn unknown_and_trimmed_ids_are_reset_never_skipped() {
    suite::unknown_and_trimmed_ids_are_reset_never_skipped::<Nats>().await;
}

#[tokio::test]
async fn reconnects_to_random_nodes_while_publishing_at_full_rate_lose_nothing() {
    suite::reconnects_to_random_nodes_while_publishing_at_full_rate_lose_nothing::<Nats>().await;
}

#[tokio::test]
async fn a_node_killed_mid_stream_loses_no_acknowledged_event() {
    faults::a_node_killed_mid_stream_loses_no_acknowledged_event::<Nats>().await;
}

#[tokio::test]
async fn redis_killed_mid_publish_loses_nothing_acknowledged_and_retries_do_not_duplicate() {
    faults::redis_killed_mid_publish_loses_nothing_acknowledged_and_retries_do_not_duplicate::<Nats>().await;
}

#[tokio::test]
async fn redis_restarted_empty_sends_one_reset_then_new_events() {
    faults::redis_restarted_empty_sends_one_reset_then_new_events::<Nats>().await;
}

#[tokio::test]
async fn a_broker_outage_refuses_publishes_fast_keeps_streams_and_recovers() {
    faults::a_broker_outage_refuses_publishes_fast_keeps_streams_and_recovers::<Nats>().await;
}

#[tokio::test]
async fn a_node_paused_for_30s_catches_up_in_order() {
    faults::a_node_paused_for_30s_catches_up_in_order::<Nats>().await;
}

#[tokio::test]
async fn the_per_user_limit_holds_across_three_nodes() {
    suite::the_per_user_limit_holds_across_three_nodes::<Nats>().await;
}

#[tokio::test]
async fn counts_broadcast_and_notify_span_the_nodes() {
    suite::counts_broadcast_and_notify_span_the_nodes::<Nats>().await;
}

#[tokio::test]
async fn a_draining_node_sends_its_clients_to_the_others_without_loss() {
    suite::a_draining_node_sends_its_clients_to_the_others_without_loss::<Nats>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_cut_broker_link_is_survived() {
    faults::a_stalled_or_cut_broker_link_is_survived::<Nats>().await;
}

#[tokio::test]
async fn tasks_span_the_nodes_also_one_started_later() {
    suite::tasks_span_the_nodes_also_one_started_later::<Nats>().await;
}

#[tokio::test]
async fn a_batch_larger_than_one_tail_read_is_answered_whole_and_in_order() {
    suite::a_batch_larger_than_one_tail_read_is_answered_whole_and_in_order::<Nats>().await;
}

#[tokio::test]
async fn concurrent_publishes_each_keep_their_ids_batches_and_keys() {
    suite::concurrent_publishes_each_keep_their_ids_batches_and_keys::<Nats>().await;
}
