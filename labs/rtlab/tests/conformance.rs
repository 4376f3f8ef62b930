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
//! cargo test -p rtlab --test conformance tls::       # every runtime over TLS
//! cargo test -p rtlab --test conformance h2::        # SSE and polling over HTTP/2
//! ```
//!
//! `conformance!(tls lab);` runs the cases that speak through the test
//! kit's clients (HTTP, SSE, WebSocket, echo, the page, /stats, shutdown)
//! against `--runtime lab` over TLS: the same cases, the same clients, in
//! rustls. Left out: the load cases (async clients of their own) and the
//! limits and shutdown cases that write on bare TCP sockets.

mod cases;
mod common;

/// The cases that speak only through the test kit's clients, so they run
/// over any socket the kit speaks: plain TCP, or TLS.
macro_rules! socket_cases {
    ($runtime:expr) => {
        conformance!(@cases $runtime;
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
                // Epochs: ids across a restart.
                ids_carry_their_epoch_on_every_transport,
                resume_across_a_restart_is_a_reset,
                presence_lists_named_subscribers,
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
                // The page, /stats, shutdown.
                index_page_uses_eventsource_and_websocket,
                stats_count_connections_and_messages,
                graceful_shutdown_on_sigterm,
        );
    };
}

/// `conformance!(lab)` expands to `mod lab { #[test] fn case() { ... } ... }`
/// with one test per case in [`cases`], each run against `--runtime lab`;
/// `conformance!(tls lab)` to the [`socket_cases`] over TLS.
macro_rules! conformance {
    ($runtime:ident) => {
        mod $runtime {
            socket_cases!(stringify!($runtime));
            conformance!(@cases stringify!($runtime);
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
                // Shutdown, written on bare sockets.
                graceful_shutdown_on_sigint,
                publishes_acknowledged_during_shutdown_are_delivered,
            );
        }
    };
    (tls $runtime:ident) => {
        mod $runtime {
            socket_cases!(concat!(stringify!($runtime), "+tls"));
        }
    };
    (h2 $runtime:ident) => {
        mod $runtime {
            conformance!(@cases concat!(stringify!($runtime), "+h2");
                sse_without_resume_starts_live,
                sse_replay_via_last_event_id_header,
                sse_replay_via_query_param,
                sse_signals_missed_messages,
                sse_keepalive_comments,
                short_poll_after,
                long_poll_wakes_on_publish,
                long_poll_times_out_empty,
                invalid_utf8_publish_gets_400,
                unknown_path_gets_404,
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

// ANCHOR: lines
conformance!(tokio);
conformance!(mio);
conformance!(may);
conformance!(threads);

/// The same contract over TLS (rustls on both sides), one line per lab.
mod tls {
    conformance!(tls tokio);
    conformance!(tls mio);
    conformance!(tls may);
    conformance!(tls threads);
}
// ANCHOR_END: lines

// ANCHOR: h2
/// The SSE cases, polling and publishing over HTTP/2 (the labs that speak
/// it): every request a stream of one connection, through the test kit's
/// HTTP/1.1-to-HTTP/2 gateway.
mod h2 {
    conformance!(h2 tokio);
}
// ANCHOR_END: h2
