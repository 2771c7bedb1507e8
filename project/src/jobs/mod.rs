//! Background jobs (mentions → e-mails, periodic work).

use serde::{Deserialize, Serialize};

/// Where a job is in its life. `failed` means the last attempt failed and another is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    Failed,
    Dead,
}

/// How many jobs are in each status (the dashboard's `jobs` object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
}
