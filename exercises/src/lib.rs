//! Ejercicios 1–6 de la semana 10.
//!
//! Tus ficheros son los `ejNN_*.rs` de esta carpeta: cada uno empieza con su objetivo, el tiempo
//! estimado, la lección que lo precede, las reglas que se comprueban y las pistas. Compruébalos con
//!
//! ```text
//! cargo test -p exercises ej01                      # las comprobaciones del ejercicio 1
//! cargo run -p exercises --bin grade -- --ejercicio 1   # su nota y qué arreglar después
//! ```
//!
//! Las comprobaciones viven fuera de esta carpeta (`exercises/checks/`), igual que sus snapshots:
//! no las edites para aprobar, el instructor corrige con las originales.
//!
//! With the `reference` feature each module below is the reference solution (`solutions/`)
//! instead of the student's file: the same checks grade both.

// The stubs, as shipped, do not use their parameters yet and end in `todo!()`.
#[cfg(not(feature = "reference"))]
#[allow(unused_variables, dead_code, clippy::todo)]
pub mod ej01_websocket_chat;
#[cfg(not(feature = "reference"))]
#[allow(unused_variables, dead_code, clippy::todo)]
pub mod ej02_email_processor;
#[cfg(not(feature = "reference"))]
#[allow(unused_variables, dead_code, clippy::todo)]
pub mod ej03_dashboard_live;
#[cfg(not(feature = "reference"))]
#[allow(unused_variables, dead_code, clippy::todo)]
pub mod ej04_notifications;
#[cfg(not(feature = "reference"))]
#[allow(unused_variables, dead_code, clippy::todo)]
pub mod ej05_game_engine;

#[cfg(feature = "reference")]
pub use solutions::{
    ej01_websocket_chat, ej02_email_processor, ej03_dashboard_live, ej04_notifications,
    ej05_game_engine,
};

/// The checks of every exercise, written once and run against whichever modules are above.
#[path = "../checks/mod.rs"]
pub mod checks;
