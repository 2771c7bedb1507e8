//! What a check is: plain data plus an async body, so the test runner and the grader can list,
//! filter, weigh and run checks without knowing what they test.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The three blocks of the rubric (`rubric.md`), weighted 60 / 25 / 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Block {
    /// Funcionalidades core (60 %): the feature works.
    Nucleo,
    /// Calidad técnica (25 %): connections, errors and recovery, performance.
    Calidad,
    /// Integración (15 %): auth, earlier weeks, asynchronous testing, deployment.
    Integracion,
}

impl Block {
    /// The Spanish name, as the rubric and the test names spell it.
    pub fn name(self) -> &'static str {
        match self {
            Block::Nucleo => "núcleo",
            Block::Calidad => "calidad",
            Block::Integracion => "integración",
        }
    }

    /// The block's share of an exercise's 100 points.
    pub fn weight(self) -> u32 {
        match self {
            Block::Nucleo => 60,
            Block::Calidad => 25,
            Block::Integracion => 15,
        }
    }
}

/// The future a check's body returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// One automatic check.
#[derive(Clone)]
pub struct Check {
    /// 1–5 for the exercises, 6 for the final project (graded over the network).
    pub exercise: u8,
    pub block: Block,
    /// The rubric criterion it counts for, as `rubric.md` names it (short Spanish title).
    pub criterion: &'static str,
    /// Weight inside its block; the grader scales each block to its share of 100.
    pub points: u32,
    /// What it verifies, in Spanish, read as a sentence: "difunde solo dentro de la sala".
    pub title: &'static str,
    /// The whole check, set-up included, must finish within this.
    pub timeout: Duration,
    pub run: fn(Env) -> CheckFuture,
}

impl Check {
    /// The name the student reads: `ej01 · núcleo · difunde solo dentro de la sala`. It is also
    /// the test name, so `cargo test -p exercises ej01` filters by exercise.
    pub fn name(&self) -> String {
        format!(
            "ej{:02} · {} · {}",
            self.exercise,
            self.block.name(),
            self.title
        )
    }
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What the checks of exercise 6 need to reach a running final project. Exercises 1–5 ignore it.
#[derive(Debug, Clone, Default)]
pub struct ProjectTarget {
    /// `http://HOST:PORT`, without a trailing slash.
    pub base_url: String,
    pub admin_user: String,
    pub admin_password: String,
    /// Where the server writes its `.eml` files, when the grader can read them.
    pub outbox: Option<PathBuf>,
    /// The server's JWT secret, when known (enables the token checks that forge tokens).
    pub jwt_secret: Option<String>,
    /// The command that starts the server, when the grader starts it itself.
    pub command: Option<String>,
}

/// What a check runs against, besides the code compiled in.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub project: Option<Arc<ProjectTarget>>,
}

/// Why a check failed, written for the student: what happened, what was expected, what came
/// back, and the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub what: String,
    pub expected: Option<String>,
    pub got: Option<String>,
    pub hint: Option<String>,
}

impl Failure {
    /// A failure that says what went wrong; add the details with the builder methods.
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            expected: None,
            got: None,
            hint: None,
        }
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    pub fn got(mut self, got: impl Into<String>) -> Self {
        self.got = Some(got.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A check that could not run in this setting (exercise 6 without `--command`): neither won
    /// nor lost. Its `what` starts with [`Failure::NOT_CHECKED`]; the grader reports it apart.
    pub fn not_checked(reason: impl Into<String>) -> Self {
        Self::new(format!("{}{}", Self::NOT_CHECKED, reason.into()))
    }

    /// The prefix of the `what` of a [`Failure::not_checked`].
    pub const NOT_CHECKED: &'static str = "no comprobado: ";

    /// Whether this is a [`Failure::not_checked`] rather than a real failure.
    pub fn is_not_checked(&self) -> bool {
        self.what.starts_with(Self::NOT_CHECKED)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.what)?;
        if let Some(expected) = &self.expected {
            write!(f, "\n  esperaba:        {expected}")?;
        }
        if let Some(got) = &self.got {
            write!(f, "\n  recibí:          {got}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  siguiente paso:  {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}
