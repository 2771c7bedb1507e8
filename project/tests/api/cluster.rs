//! Two nodes on one Redis act as one server.

use crate::helpers::*;
