//! Soluciones de referencia de los ejercicios 1–5 (los enunciados están en `exercises/src/`).
//!
//! Each module has exactly the public API of its exercise file, solved and commented to teach.
//! `exercises --features reference` puts these modules in place of the student's, so the
//! checks in `exercises/checks/` grade both with the same code.

pub mod ej01_websocket_chat;
pub mod ej02_email_processor;
pub mod ej03_dashboard_live;
pub mod ej04_notifications;
pub mod ej05_game_engine;
