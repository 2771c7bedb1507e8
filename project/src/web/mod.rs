//! The web client, embedded in the binary: no build step, no CDN, nothing to download.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");
/// The icon the pages link (`<link rel="icon">`): a speech bubble, drawn in SVG.
const FAVICON_SVG: &str = include_str!("favicon.svg");
/// The same bubble as a 32×32 ICO, for whatever asks for `/favicon.ico` without reading the
/// page (older browsers, bookmarks, feed readers): without it every one of them logs a 404.
const FAVICON_ICO: &[u8] = include_bytes!("favicon.ico");

/// `/`, `/app.js`, `/style.css` and the icon (`/favicon.svg`, `/favicon.ico`), which the
/// dashboard page links too.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { page("image/svg+xml", FAVICON_SVG) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { page("image/x-icon", FAVICON_ICO) }),
        )
}

/// A static asset. `no-cache` makes browsers revalidate, so a new build is seen at once.
fn page<B: IntoResponse>(content_type: &'static str, body: B) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
}
