//! End-to-end tests of the lessons: each lesson's `app()` served on 127.0.0.1 port 0 and driven
//! with real HTTP, WebSocket and SSE clients. One test binary, one module per lesson; each module
//! includes its lesson's source with `#[path]`, so the tests exercise exactly what students run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod l35;
mod l36;
mod l37;
mod l38;
