//! `--format json`: the report for machines (an LMS), schema `semana10-grade/1`.
//!
//! The schema is documented in `exercises/README.md` ("El JSON del corrector"). Within version 1
//! fields are only ever added; a renamed or removed field, or a changed meaning, is version 2.
//! Points are rubric points out of each exercise's 100, rounded to two decimals.

use exercises::checks::Failure;
use exercises::checks::score::{
    self, CheckScore, CriterionScore, ExerciseScore, LevelRange, ManualScore, Overall, Tally,
};
use serde::Serialize;

pub const SCHEMA: &str = "semana10-grade/1";

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// `exercises` (1–5, the compiled-in checks) or `project` (exercise 6, over the network).
    pub mode: &'static str,
    /// The URL graded in `project` mode.
    pub project: Option<String>,
    pub exercises: Vec<Exercise>,
    /// The mean of the exercises that have checks.
    pub overall: Option<OverallJson>,
    /// Aprobado reached whatever is still pending (the exit code is 0).
    pub passed: bool,
    pub exit_code: i32,
}

#[derive(Debug, Serialize)]
pub struct Points {
    pub won: f64,
    pub lost: f64,
    /// Manual criteria not yet recorded.
    pub pending: f64,
    /// Automatic checks that could not run here.
    pub unchecked: f64,
    /// `won + lost + pending + unchecked`.
    pub max: f64,
    /// The most it can still become: `won + pending + unchecked`.
    pub best: f64,
}

#[derive(Debug, Serialize)]
pub struct Level {
    /// The level of `won`.
    pub min: &'static str,
    /// The level of `best`.
    pub max: &'static str,
    /// Set when `min == max`: nothing pending can change it.
    pub decided: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct Exercise {
    pub exercise: u8,
    pub title: &'static str,
    /// False when the exercise has no automatic checks yet (then it has no grade).
    pub scored: bool,
    pub points: Points,
    pub level: Level,
    pub automatic: Automatic,
    pub blocks: Vec<BlockJson>,
    pub criteria: Vec<Criterion>,
    pub notes: Vec<String>,
    /// The name of the first failing check, in the exercise's order.
    pub next: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Automatic {
    pub points: Points,
    /// `won / (won + lost) × 100`: over the checks that ran.
    pub score: Option<f64>,
    pub level: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct BlockJson {
    /// `nucleo`, `calidad` or `integracion`.
    pub block: &'static str,
    pub name: &'static str,
    pub title: &'static str,
    /// Its share of the exercise's 100 (60 / 25 / 15 unless a block was empty).
    pub weight: f64,
    pub points: Points,
}

#[derive(Debug, Serialize)]
pub struct Criterion {
    pub criterion: &'static str,
    pub block: &'static str,
    pub points: Points,
    pub checks: Vec<CheckJson>,
    pub manual: Option<Manual>,
}

#[derive(Debug, Serialize)]
pub struct CheckJson {
    /// `ej01 · núcleo · …`, the test name of `cargo test -p exercises`.
    pub name: String,
    pub title: &'static str,
    /// Its weight inside its block, as the check declares it.
    pub weight: u32,
    /// Its rubric points.
    pub value: f64,
    /// `passed`, `failed` or `not_checked`.
    pub status: &'static str,
    pub elapsed_ms: u64,
    pub failure: Option<FailureJson>,
}

#[derive(Debug, Serialize)]
pub struct FailureJson {
    pub what: String,
    pub expected: Option<String>,
    pub got: Option<String>,
    pub hint: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Manual {
    /// The key in the `--manual` file.
    pub id: &'static str,
    /// Its rubric points in this exercise.
    pub value: f64,
    pub recorded: bool,
    /// The recorded points, out of `max`.
    pub mark: Option<f64>,
    pub max: f64,
    pub comment: Option<String>,
    /// How to review it (the guide's first line; the bands are in rubric.md).
    pub how: &'static str,
}

#[derive(Debug, Serialize)]
pub struct OverallJson {
    pub exercises: usize,
    pub points: Points,
    pub level: Level,
}

fn round(value: f64) -> f64 {
    let rounded = (value * 100.0).round() / 100.0;
    if rounded == 0.0 { 0.0 } else { rounded }
}

fn points(tally: &Tally) -> Points {
    Points {
        won: round(tally.won),
        lost: round(tally.lost),
        pending: round(tally.pending),
        unchecked: round(tally.unchecked),
        max: round(tally.max()),
        best: round(tally.best()),
    }
}

fn level(range: LevelRange) -> Level {
    Level {
        min: range.min.id(),
        max: range.max.id(),
        decided: range.decided().map(score::Level::id),
    }
}

fn failure(failure: &Failure) -> FailureJson {
    FailureJson {
        what: failure.what.clone(),
        expected: failure.expected.clone(),
        got: failure.got.clone(),
        hint: failure.hint.clone(),
    }
}

fn check(check: &CheckScore) -> CheckJson {
    CheckJson {
        name: check.check.name(),
        title: check.check.title,
        weight: check.check.points,
        value: round(check.value),
        status: check.status.id(),
        elapsed_ms: u64::try_from(check.elapsed.as_millis()).unwrap_or(u64::MAX),
        failure: check.status.failure().map(failure),
    }
}

fn manual(manual: &ManualScore) -> Manual {
    Manual {
        id: manual.criterion.id,
        value: round(manual.value),
        recorded: manual.mark.is_some(),
        mark: manual.mark.as_ref().map(|mark| mark.points),
        max: manual.criterion.points,
        comment: manual.mark.as_ref().and_then(|mark| mark.comment.clone()),
        how: manual.criterion.how,
    }
}

fn criterion(criterion: &CriterionScore) -> Criterion {
    Criterion {
        criterion: criterion.name,
        block: score::block_id(criterion.block),
        points: points(&criterion.tally),
        checks: criterion.checks.iter().map(check).collect(),
        manual: criterion.manual.as_ref().map(manual),
    }
}

pub fn exercise(score: &ExerciseScore) -> Exercise {
    Exercise {
        exercise: score.exercise,
        title: score::exercise_title(score.exercise),
        scored: score.has_checks(),
        points: points(&score.tally),
        level: level(score.level()),
        automatic: Automatic {
            points: points(&score.automatic()),
            score: score.automatic_score().map(round),
            level: score.automatic_level().map(score::Level::id),
        },
        blocks: score
            .blocks
            .iter()
            .map(|block| BlockJson {
                block: score::block_id(block.block),
                name: block.block.name(),
                title: score::block_title(block.block),
                weight: round(block.weight),
                points: points(&block.tally),
            })
            .collect(),
        criteria: score.criteria.iter().map(criterion).collect(),
        notes: score.notes.clone(),
        next: score.next_failure().map(|next| next.check.name()),
    }
}

pub fn report(
    mode: &'static str,
    project: Option<String>,
    scores: &[ExerciseScore],
    overall: Option<&Overall>,
    exit_code: i32,
) -> Report {
    Report {
        schema: SCHEMA,
        mode,
        project,
        exercises: scores.iter().map(exercise).collect(),
        overall: overall.map(|overall| OverallJson {
            exercises: overall.exercises,
            points: points(&overall.tally),
            level: level(overall.level()),
        }),
        passed: exit_code == crate::cli::exit::APROBADO,
        exit_code,
    }
}
