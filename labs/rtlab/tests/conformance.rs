//! The rtlab conformance suite: the contract (the book's chapter "The contract",
//! `book/src/contract.md`; its text: `book/src/contract/CONTRACT.md`), checked against a
//! real `rtlab serve --runtime <lab>` process over real sockets with
//! independent clients.
//!
//! The suite is written once; `conformance!(lab);` generates a module with
//! every test for one runtime, so adding a lab adds one line at the bottom.
//!
//! ```text
//! cargo test -p rtlab --test conformance            # every runtime
//! cargo test -p rtlab --test conformance tokio::    # one runtime
//! ```

mod cases;
mod common;

/// `conformance!(lab)` expands to `mod lab { #[test] fn case() { ... } ... }`
/// with one test per case in [`cases`], each run against `--runtime lab`.
macro_rules! conformance {
    ($runtime:ident) => {
        mod $runtime {
            conformance!(@cases stringify!($runtime);
                // Publishing and polling.
                ids_are_sequential_per_topic_across_transports,
                message_data_round_trips_unchanged,
                multiline_data_on_every_transport,
                short_poll_after,
                long_poll_wakes_on_publish,
                long_poll_times_out_empty,
                publish_honours_expect_continue,
                pipelined_requests_are_answered_in_order,
                // HTTP errors.
                bad_requests_get_400,
                unknown_path_gets_404,
                wrong_method_gets_405,
                chunked_publish_gets_411,
                content_length_with_transfer_encoding_gets_400,
                oversized_publish_gets_413,
                oversized_head_gets_431,
                invalid_utf8_publish_gets_400,
                bad_client_does_not_disturb_others,
                // Server-Sent Events.
                sse_without_resume_starts_live,
                sse_replay_via_last_event_id_header,
                sse_replay_via_query_param,
                sse_signals_missed_messages,
                sse_keepalive_comments,
                // WebSocket /ws.
                ws_replay_via_after,
                ws_signals_missed_messages,
                poll_signals_missed_messages,
                ws_client_publish_and_errors,
                ws_ping_timeout,
                // WebSocket /echo.
                echo_round_trips,
                echo_protocol_errors_close_1002,
                echo_invalid_utf8_closes_1007,
                echo_too_big_closes_1009,
                // Load and backpressure.
                concurrent_publishers_get_unique_gapless_ids,
                thousand_subscribers_receive_everything_in_order,
                slow_consumer_is_disconnected,
                slow_consumer_drops_oldest,
                // Limits.
                slow_requests_get_408_and_idle_connections_close,
                topic_flood_levels_off_with_503,
                idle_topics_make_room_and_held_ones_stay,
                connection_flood_gets_503_while_others_are_served,
                // Tokens and origins.
                tokens_refuse_with_401_and_403,
                token_expiry_ends_every_transport,
                ws_refresh_extends_the_connection,
                refused_upgrades_get_501,
                ticker_and_chat_pages_are_served,
                // The page, /stats, shutdown.
                index_page_uses_eventsource_and_websocket,
                stats_count_connections_and_messages,
                graceful_shutdown_on_sigterm,
                graceful_shutdown_on_sigint,
                publishes_acknowledged_during_shutdown_are_delivered,
            );
        }
    };
    (@cases $runtime:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                crate::cases::$case($runtime);
            }
        )*
    };
}

conformance!(tokio);
conformance!(mio);
conformance!(may);
conformance!(threads);
