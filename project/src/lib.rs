//! `chat`: the real-time chat server of week 10.

pub mod backend;
pub mod domain;
pub mod ws;
