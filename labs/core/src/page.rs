//! The demo pages: `GET /` (both push transports side by side), and the two
//! pages as users meet them, `GET /ticker` and `GET /chat`.

/// A small page that subscribes with `EventSource` and `WebSocket` and
/// publishes with `fetch` and a WebSocket frame, against the server that
/// served it.
pub const DEMO_PAGE: &str = include_str!("demo.html");

/// `GET /ticker?topic=T[&token=...]`: an `EventSource` list that shows
/// reconnections, a stream that started again after a server restart (ids
/// restarted, or another epoch), the missed and reset signals, and the end
/// of its token (`event: expired`).
pub const TICKER_PAGE: &str = include_str!("ticker.html");

/// `GET /chat?topic=T&name=N[&token=...]`: a chat over a WebSocket that
/// falls back to long polling (and `POST /publish`) when the upgrade is
/// refused; shows a token's end (close code 4001, or a `401`).
pub const CHAT_PAGE: &str = include_str!("chat.html");

/// The page a page route serves (the demo page for any other route).
pub fn html(route: &crate::Route) -> &'static str {
    match route {
        crate::Route::Ticker => TICKER_PAGE,
        crate::Route::Chat => CHAT_PAGE,
        _ => DEMO_PAGE,
    }
}
