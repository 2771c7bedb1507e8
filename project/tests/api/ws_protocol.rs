//! WebSocket frames: each client frame, each error code, and bad input that changes nothing.

use crate::helpers::*;
