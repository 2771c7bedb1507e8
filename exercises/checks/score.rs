//! From check outcomes to rubric points and levels (`rubric.md`).
//!
//! Pure functions over data: the grader, the rubric generator and the tests of exercise 6 all
//! call [`score_exercise`] with `(Check, Outcome)` pairs and the instructor's [`ManualReview`], and
//! read the result; nothing here runs a check or prints.
//!
//! How points are made (the rubric's rules, in code):
//! - An exercise is worth 100 points in three blocks, [`Block::weight`]: 60 / 25 / 15.
//! - Manual criteria ([`MANUAL_CRITERIA`]) have fixed rubric points inside their block; the rest
//!   of the block is shared by its automatic checks in proportion to their `points` weights.
//! - A block with no automatic check gives its manual criteria the whole block; a block with
//!   nothing at all (an exercise without integration checks, say) hands its weight to the other
//!   blocks in proportion to theirs, so an exercise is always out of 100. The report says so.
//! - A manual criterion the instructor has not recorded is *pending*, and an automatic check
//!   that could not run here (see [`not_checked`]) is *unchecked*: both count neither as won nor
//!   as lost, so a score is a range, `won ..= won + pending + unchecked`, and so is its level.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ej06;
use super::registry::{Block, Check, Failure};
use super::runner::Outcome;
use Block::{Calidad, Integracion, Nucleo};

/// Every block, in the rubric's order.
pub const BLOCKS: [Block; 3] = [Block::Nucleo, Block::Calidad, Block::Integracion];

/// Float noise below this never changes a level (thresholds are whole numbers).
const EPSILON: f64 = 1e-6;

/// The exercises' names as the seed gives them; 6 is the final project.
pub fn exercise_title(exercise: u8) -> &'static str {
    match exercise {
        1 => "WebSocket Chat",
        2 => "Email Processor",
        3 => "Dashboard Live",
        4 => "Notification System",
        5 => "Game Engine",
        6 => "Proyecto integrador: chat empresarial",
        _ => "ejercicio desconocido",
    }
}

/// The stable id of a block in files and JSON (`nucleo`, `calidad`, `integracion`).
pub fn block_id(block: Block) -> &'static str {
    match block {
        Block::Nucleo => "nucleo",
        Block::Calidad => "calidad",
        Block::Integracion => "integracion",
    }
}

/// The block's title as the seed's "Criterios de Evaluación" names it.
pub fn block_title(block: Block) -> &'static str {
    match block {
        Block::Nucleo => "Funcionalidades core",
        Block::Calidad => "Calidad técnica",
        Block::Integracion => "Integración",
    }
}

// ---------------------------------------------------------------------------------------------
// Levels
// ---------------------------------------------------------------------------------------------

/// The seed's "Criterios de Éxito", as thresholds on a score out of 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    NoAprobado,
    Aprobado,
    Bueno,
    Excelente,
}

impl Level {
    /// From the lowest to the highest.
    pub const ALL: [Level; 4] = [
        Level::NoAprobado,
        Level::Aprobado,
        Level::Bueno,
        Level::Excelente,
    ];

    /// The level a score out of 100 reaches.
    pub fn from_score(score: f64) -> Level {
        Level::ALL
            .into_iter()
            .rev()
            .find(|level| score + EPSILON >= level.threshold())
            .unwrap_or(Level::NoAprobado)
    }

    /// The minimum score of the level.
    pub fn threshold(self) -> f64 {
        match self {
            Level::NoAprobado => 0.0,
            Level::Aprobado => 70.0,
            Level::Bueno => 85.0,
            Level::Excelente => 95.0,
        }
    }

    /// As the student reads it.
    pub fn name(self) -> &'static str {
        match self {
            Level::NoAprobado => "No aprobado",
            Level::Aprobado => "Aprobado",
            Level::Bueno => "Bueno",
            Level::Excelente => "Excelente",
        }
    }

    /// As JSON spells it.
    pub fn id(self) -> &'static str {
        match self {
            Level::NoAprobado => "no_aprobado",
            Level::Aprobado => "aprobado",
            Level::Bueno => "bueno",
            Level::Excelente => "excelente",
        }
    }

    /// The seed's title of the level.
    pub fn title(self) -> &'static str {
        match self {
            Level::NoAprobado => "No aprobado",
            Level::Aprobado => "Mínimo viable",
            Level::Bueno => "Implementación completa",
            Level::Excelente => "Implementación avanzada",
        }
    }
}

/// What the level of a score can still be while some points are pending or unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelRange {
    pub min: Level,
    pub max: Level,
}

impl LevelRange {
    pub fn of(min_score: f64, max_score: f64) -> Self {
        Self {
            min: Level::from_score(min_score),
            max: Level::from_score(max_score),
        }
    }

    /// The level, when the pending points cannot change it.
    pub fn decided(self) -> Option<Level> {
        (self.min == self.max).then_some(self.min)
    }

    /// "Bueno", or "entre Aprobado y Excelente (pendiente de revisión)".
    pub fn describe(self) -> String {
        match self.decided() {
            Some(level) => level.name().to_owned(),
            None => format!(
                "entre {} y {} (según lo pendiente)",
                self.min.name(),
                self.max.name()
            ),
        }
    }
}

/// Where the rubric assesses something: a block of an exercise, or one criterion of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub exercise: u8,
    pub block: Block,
    /// One criterion of that block (as its checks name it); `None`: the whole block.
    pub criterion: Option<&'static str>,
}

impl Place {
    /// A whole block of an exercise.
    pub const fn block(exercise: u8, block: Block) -> Self {
        Self {
            exercise,
            block,
            criterion: None,
        }
    }

    /// One criterion of a block of an exercise.
    pub const fn criterion(exercise: u8, block: Block, criterion: &'static str) -> Self {
        Self {
            exercise,
            block,
            criterion: Some(criterion),
        }
    }

    /// Whether a check counts here.
    pub fn holds(&self, check: &Check) -> bool {
        check.exercise == self.exercise
            && check.block == self.block
            && self
                .criterion
                .is_none_or(|criterion| criterion == check.criterion)
    }
}

/// What the seed lists under each level, and where in the exercises the rubric assesses it. The
/// level itself is the threshold on the score; this says which points carry each item.
#[derive(Debug, Clone, Copy)]
pub struct LevelItem {
    pub level: Level,
    pub item: &'static str,
    pub assessed_by: &'static [Place],
}

/// The seed's "Criterios de Éxito", item by item.
pub const LEVEL_ITEMS: &[LevelItem] = &[
    LevelItem {
        level: Level::Aprobado,
        item: "WebSocket básico funcionando",
        assessed_by: &[
            Place::block(1, Nucleo),
            Place::criterion(6, Nucleo, ej06::WEBSOCKETS),
        ],
    },
    LevelItem {
        level: Level::Aprobado,
        item: "Al menos un Background Task implementado",
        assessed_by: &[Place::block(2, Nucleo)],
    },
    LevelItem {
        level: Level::Aprobado,
        item: "SSE básico con actualizaciones simples",
        assessed_by: &[Place::criterion(3, Nucleo, "Stream SSE en vivo")],
    },
    LevelItem {
        level: Level::Aprobado,
        item: "Integración con autenticación existente",
        assessed_by: &[Place::criterion(6, Nucleo, ej06::AUTH)],
    },
    LevelItem {
        level: Level::Bueno,
        item: "Sistema de chat completo",
        assessed_by: &[
            Place::block(1, Nucleo),
            Place::criterion(6, Nucleo, ej06::WEBSOCKETS),
        ],
    },
    LevelItem {
        level: Level::Bueno,
        item: "Múltiples tipos de Background Tasks",
        assessed_by: &[
            Place::block(2, Nucleo),
            Place::criterion(4, Integracion, "E-mail en segundo plano"),
            Place::criterion(6, Nucleo, ej06::JOBS),
        ],
    },
    LevelItem {
        level: Level::Bueno,
        item: "Dashboard en tiempo real funcional",
        assessed_by: &[
            Place::block(3, Nucleo),
            Place::criterion(6, Nucleo, ej06::SSE),
        ],
    },
    LevelItem {
        level: Level::Bueno,
        item: "Manejo de errores robusto",
        assessed_by: &[
            Place::block(1, Calidad),
            Place::block(2, Calidad),
            Place::block(3, Calidad),
            Place::block(4, Calidad),
            Place::block(5, Calidad),
            Place::criterion(6, Calidad, ej06::ERRORS),
        ],
    },
    LevelItem {
        level: Level::Excelente,
        item: "Chat con salas y funcionalidades avanzadas",
        assessed_by: &[
            Place::criterion(1, Nucleo, "Difusión por salas"),
            Place::criterion(6, Nucleo, ej06::WEBSOCKETS),
        ],
    },
    LevelItem {
        level: Level::Excelente,
        item: "Sistema de notificaciones complejo",
        assessed_by: &[Place::block(4, Nucleo), Place::block(4, Integracion)],
    },
    LevelItem {
        level: Level::Excelente,
        item: "Optimizaciones de performance aplicadas",
        assessed_by: &[
            Place::criterion(1, Calidad, "Cola acotada por conexión"),
            Place::criterion(3, Nucleo, "Caché con TTL e invalidación"),
            Place::criterion(3, Calidad, "Caché con TTL e invalidación"),
            Place::criterion(6, Calidad, ej06::PERFORMANCE),
        ],
    },
    LevelItem {
        level: Level::Excelente,
        item: "Monitoring y métricas implementadas",
        assessed_by: &[
            Place::criterion(3, Nucleo, "Stream SSE en vivo"),
            Place::criterion(6, Integracion, ej06::EARLIER_WEEKS),
        ],
    },
];

// ---------------------------------------------------------------------------------------------
// Manual criteria
// ---------------------------------------------------------------------------------------------

/// One step of a manual criterion's scale: the points to give when the work looks like this.
#[derive(Debug, Clone, Copy)]
pub struct Band {
    pub points: f64,
    pub description: &'static str,
}

/// A rubric criterion an instructor assesses by hand, with a guide so two instructors give the
/// same points to the same work.
#[derive(Debug, Clone, Copy)]
pub struct ManualCriterion {
    /// The key in the `--manual` file (`[ej01] codigo = 4`).
    pub id: &'static str,
    pub exercises: &'static [u8],
    pub block: Block,
    /// The criterion as the seed names it.
    pub criterion: &'static str,
    /// Rubric points (out of the exercise's 100), taken from its block.
    pub points: f64,
    /// What to open or run, in one or two sentences.
    pub how: &'static str,
    /// From the most points to none; give the highest band whose description holds entirely.
    pub bands: &'static [Band],
}

/// Every manual criterion of the rubric.
pub const MANUAL_CRITERIA: &[ManualCriterion] = &[
    ManualCriterion {
        id: "codigo",
        exercises: &[1, 2, 3, 4, 5, 6],
        block: Block::Calidad,
        criterion: "Clean code y documentación",
        points: 5.0,
        how: "Lee el fichero entregado (o el código del proyecto) de arriba abajo y ejecuta \
              `cargo clippy -- -D warnings` (o el linter de su lenguaje); diez minutos como máximo.",
        bands: &[
            Band {
                points: 5.0,
                description: "sin avisos del linter; funciones cortas con un propósito; nombres \
                              del dominio (sala, mensaje, usuario); sin `unwrap`/`expect` ni \
                              pánicos ante datos del cliente; los comentarios dicen por qué; \
                              cómo ejecutarlo está escrito",
            },
            Band {
                points: 3.0,
                description: "se lee sin esfuerzo, pero hay duplicación, funciones largas, \
                              avisos del linter o decisiones sin explicar",
            },
            Band {
                points: 1.0,
                description: "funciona, pero cuesta seguirlo: código muerto o comentado, \
                              nombres genéricos, ninguna explicación",
            },
            Band {
                points: 0.0,
                description: "no se entregó, o no hay forma de leerlo",
            },
        ],
    },
    ManualCriterion {
        id: "contenedor",
        exercises: &[6],
        block: Block::Integracion,
        criterion: "Containerización apropiada",
        points: 4.0,
        how: "Desde un clon limpio, `docker compose up --build` (o el comando de su README) y \
              vuelve a pasar `grade --project` contra ese contenedor.",
        bands: &[
            Band {
                points: 4.0,
                description: "arranca con un comando desde un clon limpio; imagen multi-etapa \
                              sin herramientas de compilación; usuario no root; configuración \
                              por variables de entorno; Redis como servicio; healthcheck",
            },
            Band {
                points: 2.0,
                description: "arranca con el contenedor, pero la imagen es pesada, corre como \
                              root o necesita pasos a mano que no están escritos",
            },
            Band {
                points: 0.0,
                description: "no hay contenedor o no arranca",
            },
        ],
    },
    ManualCriterion {
        id: "pruebas",
        exercises: &[6],
        block: Block::Integracion,
        criterion: "Testing de componentes asíncronos",
        points: 3.0,
        how: "Ejecuta la suite de pruebas del proyecto (`cargo test`, `pytest`…) y lee dos \
              pruebas de WebSocket o SSE.",
        bands: &[
            Band {
                points: 3.0,
                description: "la suite pasa; prueba WebSocket y SSE con clientes reales contra \
                              el servidor en un puerto libre; el tiempo se controla (reloj \
                              pausado o inyectado), sin `sleep` largos",
            },
            Band {
                points: 1.5,
                description: "hay pruebas de los componentes asíncronos, pero dependen de \
                              esperas fijas o solo prueban funciones sueltas",
            },
            Band {
                points: 0.0,
                description: "no hay pruebas de WebSocket, jobs ni SSE, o la suite no pasa",
            },
        ],
    },
];

/// The manual criteria of one exercise.
pub fn manual_criteria(exercise: u8) -> Vec<&'static ManualCriterion> {
    MANUAL_CRITERIA
        .iter()
        .filter(|manual| manual.exercises.contains(&exercise))
        .collect()
}

/// The points an instructor recorded for one manual criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualMark {
    pub points: f64,
    pub comment: Option<String>,
}

/// The instructor's review: points per `(exercise, criterion id)`, validated against
/// [`MANUAL_CRITERIA`] on the way in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManualReview {
    marks: BTreeMap<(u8, String), ManualMark>,
}

impl ManualReview {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the points of one criterion; refuses unknown criteria and points out of range,
    /// with the reason in Spanish.
    pub fn record(
        &mut self,
        exercise: u8,
        id: &str,
        points: f64,
        comment: Option<String>,
    ) -> Result<(), String> {
        let criteria = manual_criteria(exercise);
        let Some(criterion) = criteria.iter().find(|manual| manual.id == id) else {
            let known: Vec<&str> = criteria.iter().map(|manual| manual.id).collect();
            return Err(format!(
                "el ejercicio {exercise} no tiene el criterio manual «{id}» (tiene: {})",
                if known.is_empty() {
                    "ninguno".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        if !points.is_finite() || points < 0.0 || points > criterion.points + EPSILON {
            return Err(format!(
                "ej{exercise:02}.{id}: {points} puntos está fuera de 0..={} («{}»)",
                criterion.points, criterion.criterion
            ));
        }
        self.marks
            .insert((exercise, id.to_owned()), ManualMark { points, comment });
        Ok(())
    }

    pub fn get(&self, exercise: u8, id: &str) -> Option<&ManualMark> {
        self.marks.get(&(exercise, id.to_owned()))
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

/// What a check whose body could not check anything here returns (exercise 6 without
/// `--command`, say): its points are reported as unchecked, neither won nor lost. The same as
/// [`Failure::not_checked`].
pub fn not_checked(reason: impl Into<String>) -> Failure {
    Failure::not_checked(reason)
}

/// Whether a failure is really "could not check" ([`Failure::not_checked`]); the prefix is
/// matched without regard to case, so a hand-written "No comprobado: …" counts too.
pub fn is_not_checked(failure: &Failure) -> bool {
    failure.is_not_checked()
        || failure
            .what
            .trim_start()
            .to_lowercase()
            .starts_with(Failure::NOT_CHECKED)
}

/// How one check ended, as the rubric counts it.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Passed,
    Failed(Failure),
    NotChecked(Failure),
}

impl Status {
    pub fn of(outcome: &Outcome) -> Status {
        match &outcome.result {
            Ok(()) => Status::Passed,
            Err(failure) if is_not_checked(failure) => Status::NotChecked(failure.clone()),
            Err(failure) => Status::Failed(failure.clone()),
        }
    }

    pub fn id(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed(_) => "failed",
            Status::NotChecked(_) => "not_checked",
        }
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Status::Passed => None,
            Status::Failed(failure) | Status::NotChecked(failure) => Some(failure),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scores
// ---------------------------------------------------------------------------------------------

/// Rubric points split by what happened to them; `max()` is their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub won: f64,
    pub lost: f64,
    /// Manual criteria the instructor has not recorded yet.
    pub pending: f64,
    /// Automatic checks that could not run here.
    pub unchecked: f64,
}

impl Tally {
    pub fn max(&self) -> f64 {
        self.won + self.lost + self.pending + self.unchecked
    }

    /// The most this can still become.
    pub fn best(&self) -> f64 {
        self.won + self.pending + self.unchecked
    }

    /// Whether some points are still open.
    pub fn is_open(&self) -> bool {
        self.pending + self.unchecked > EPSILON
    }

    fn add(&mut self, other: &Tally) {
        self.won += other.won;
        self.lost += other.lost;
        self.pending += other.pending;
        self.unchecked += other.unchecked;
    }
}

/// One automatic check, scored.
#[derive(Debug, Clone)]
pub struct CheckScore {
    pub check: Check,
    pub status: Status,
    pub elapsed: Duration,
    /// Its rubric points (its weight, scaled to its block's share).
    pub value: f64,
    /// Its position among the checks graded, so reports keep the exercise's order.
    pub order: usize,
}

impl CheckScore {
    fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        match self.status {
            Status::Passed => tally.won = self.value,
            Status::Failed(_) => tally.lost = self.value,
            Status::NotChecked(_) => tally.unchecked = self.value,
        }
        tally
    }
}

/// One manual criterion of an exercise, scored (or pending).
#[derive(Debug, Clone)]
pub struct ManualScore {
    pub criterion: &'static ManualCriterion,
    /// Its rubric points in this exercise (its `points`, unless its block had to be rescaled).
    pub value: f64,
    pub mark: Option<ManualMark>,
}

impl ManualScore {
    fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        match &self.mark {
            Some(mark) => {
                // Marks are out of the criterion's own points; scale if the block was rescaled.
                let won = mark.points / self.criterion.points * self.value;
                tally.won = won;
                tally.lost = self.value - won;
            }
            None => tally.pending = self.value,
        }
        tally
    }
}

/// One rubric criterion of an exercise: its automatic checks and, maybe, a manual part.
#[derive(Debug, Clone)]
pub struct CriterionScore {
    pub name: &'static str,
    pub block: Block,
    pub checks: Vec<CheckScore>,
    pub manual: Option<ManualScore>,
    pub tally: Tally,
}

impl CriterionScore {
    /// The checks that failed, in order: the reasons for the lost points.
    pub fn failed(&self) -> impl Iterator<Item = &CheckScore> {
        self.checks
            .iter()
            .filter(|check| matches!(check.status, Status::Failed(_)))
    }
}

/// One block of an exercise.
#[derive(Debug, Clone)]
pub struct BlockScore {
    pub block: Block,
    /// Its share of the exercise's 100 (the block's weight, or more when another block was
    /// empty and handed its weight over; 0 when this one is the empty one).
    pub weight: f64,
    pub tally: Tally,
}

/// One exercise, scored out of 100.
#[derive(Debug, Clone)]
pub struct ExerciseScore {
    pub exercise: u8,
    pub blocks: Vec<BlockScore>,
    /// In the order the checks list them, each block's manual criteria after its checks.
    pub criteria: Vec<CriterionScore>,
    pub tally: Tally,
    /// What the report must say about how the points were made (a rescaled block…).
    pub notes: Vec<String>,
}

impl ExerciseScore {
    /// Whether any automatic check was run: an exercise without checks has no score.
    pub fn has_checks(&self) -> bool {
        self.criteria
            .iter()
            .any(|criterion| !criterion.checks.is_empty())
    }

    pub fn level(&self) -> LevelRange {
        LevelRange::of(self.tally.won, self.tally.best())
    }

    /// The automatic part alone: the rubric points of its checks.
    pub fn automatic(&self) -> Tally {
        let mut tally = Tally::default();
        for check in self.checks() {
            tally.add(&check.tally());
        }
        tally
    }

    /// The automatic part as a score out of 100 over the checks that could run: what a test
    /// of the reference project requires to be Excelente. `None` when no check ran.
    pub fn automatic_score(&self) -> Option<f64> {
        let automatic = self.automatic();
        let checked = automatic.won + automatic.lost;
        (checked > EPSILON).then(|| automatic.won / checked * 100.0)
    }

    /// The level of [`Self::automatic_score`].
    pub fn automatic_level(&self) -> Option<Level> {
        self.automatic_score().map(Level::from_score)
    }

    pub fn checks(&self) -> impl Iterator<Item = &CheckScore> {
        self.criteria
            .iter()
            .flat_map(|criterion| criterion.checks.iter())
    }

    /// The manual criteria still to review.
    pub fn pending_manual(&self) -> impl Iterator<Item = &ManualScore> {
        self.criteria
            .iter()
            .filter_map(|criterion| criterion.manual.as_ref())
            .filter(|manual| manual.mark.is_none())
    }

    /// The first check that failed, in the order the exercise lists its checks (what to fix
    /// next). Unchecked ones are skipped: there is nothing the student can do about them.
    pub fn next_failure(&self) -> Option<&CheckScore> {
        let mut failed: Vec<&CheckScore> = self
            .checks()
            .filter(|check| matches!(check.status, Status::Failed(_)))
            .collect();
        failed.sort_by_key(|check| check.order);
        failed.into_iter().next()
    }

    pub fn block(&self, block: Block) -> Option<&BlockScore> {
        self.blocks.iter().find(|score| score.block == block)
    }
}

/// Scores one exercise from the outcomes of its checks (other exercises' pairs are ignored) and
/// the instructor's review.
pub fn score_exercise(
    exercise: u8,
    results: &[(Check, Outcome)],
    manual: &ManualReview,
) -> ExerciseScore {
    let results: Vec<(usize, &Check, &Outcome)> = results
        .iter()
        .enumerate()
        .filter(|(_, (check, _))| check.exercise == exercise)
        .map(|(order, (check, outcome))| (order, check, outcome))
        .collect();
    let manuals = manual_criteria(exercise);
    let mut notes = Vec::new();

    // 1. Each block's share of 100: an empty block hands its weight to the others.
    let weights_of = |block: Block| {
        let auto: u32 = results
            .iter()
            .filter(|(_, check, _)| check.block == block)
            .map(|(_, check, _)| check.points)
            .sum();
        let manual: f64 = manuals
            .iter()
            .filter(|criterion| criterion.block == block)
            .map(|criterion| criterion.points)
            .sum();
        (auto, manual)
    };
    let present: Vec<Block> = BLOCKS
        .into_iter()
        .filter(|block| {
            let (auto, manual) = weights_of(*block);
            auto > 0 || manual > 0.0
        })
        .collect();
    let present_weight: u32 = present.iter().map(|block| block.weight()).sum();
    let share = |block: Block| -> f64 {
        if present_weight == 0 || !present.contains(&block) {
            0.0
        } else {
            f64::from(block.weight()) * 100.0 / f64::from(present_weight)
        }
    };
    for block in BLOCKS {
        if !present.contains(&block) && present_weight > 0 {
            notes.push(format!(
                "el bloque de {} no tiene comprobaciones en este ejercicio: sus {} puntos se \
                 reparten entre los demás bloques",
                block.name(),
                block.weight()
            ));
        }
    }

    // 2. Inside each block: manual criteria keep their points, checks share the rest.
    let mut values: Vec<f64> = vec![0.0; results.len()];
    let mut manual_values: Vec<f64> = vec![0.0; manuals.len()];
    for block in BLOCKS {
        let weight = share(block);
        let (auto, manual) = weights_of(block);
        if auto > 0 {
            let manual_part = manual.min(weight);
            let auto_part = weight - manual_part;
            for (value, (_, check, _)) in values.iter_mut().zip(&results) {
                if check.block == block {
                    *value = auto_part * f64::from(check.points) / f64::from(auto);
                }
            }
            let scale = if manual > weight {
                weight / manual
            } else {
                1.0
            };
            for (value, criterion) in manual_values.iter_mut().zip(&manuals) {
                if criterion.block == block {
                    *value = criterion.points * scale;
                }
            }
        } else if manual > 0.0 {
            if (manual - weight).abs() > EPSILON {
                notes.push(format!(
                    "el bloque de {} solo tiene criterios de revisión manual: valen sus {:.0} \
                     puntos enteros",
                    block.name(),
                    weight
                ));
            }
            for (value, criterion) in manual_values.iter_mut().zip(&manuals) {
                if criterion.block == block {
                    *value = criterion.points / manual * weight;
                }
            }
        }
    }

    // 3. Group by criterion, keeping the order in which the exercise lists its checks.
    let mut criteria: Vec<CriterionScore> = Vec::new();
    for ((order, check, outcome), value) in results.iter().zip(&values) {
        let scored = CheckScore {
            check: (*check).clone(),
            status: Status::of(outcome),
            elapsed: outcome.elapsed,
            value: *value,
            order: *order,
        };
        match criteria
            .iter_mut()
            .find(|criterion| criterion.name == check.criterion && criterion.block == check.block)
        {
            Some(criterion) => criterion.checks.push(scored),
            None => criteria.push(CriterionScore {
                name: check.criterion,
                block: check.block,
                checks: vec![scored],
                manual: None,
                tally: Tally::default(),
            }),
        }
    }
    for (criterion, value) in manuals.iter().zip(&manual_values) {
        let scored = ManualScore {
            criterion,
            value: *value,
            mark: manual.get(exercise, criterion.id).cloned(),
        };
        match criteria.iter_mut().find(|existing| {
            existing.name == criterion.criterion && existing.block == criterion.block
        }) {
            Some(existing) => existing.manual = Some(scored),
            None => criteria.push(CriterionScore {
                name: criterion.criterion,
                block: criterion.block,
                checks: Vec::new(),
                manual: Some(scored),
                tally: Tally::default(),
            }),
        }
    }
    // Blocks in the rubric's order; inside a block, the order of first appearance.
    criteria.sort_by_key(|criterion| criterion.block);
    for criterion in &mut criteria {
        let mut tally = Tally::default();
        for check in &criterion.checks {
            tally.add(&check.tally());
        }
        if let Some(manual) = &criterion.manual {
            tally.add(&manual.tally());
        }
        criterion.tally = tally;
    }

    // 4. Block and exercise totals.
    let blocks: Vec<BlockScore> = BLOCKS
        .into_iter()
        .map(|block| {
            let mut tally = Tally::default();
            for criterion in criteria.iter().filter(|criterion| criterion.block == block) {
                tally.add(&criterion.tally);
            }
            BlockScore {
                block,
                weight: share(block),
                tally,
            }
        })
        .collect();
    let mut tally = Tally::default();
    for block in &blocks {
        tally.add(&block.tally);
    }
    ExerciseScore {
        exercise,
        blocks,
        criteria,
        tally,
        notes,
    }
}

/// Scores every exercise that has a check among `results`, in exercise order.
pub fn score_all(results: &[(Check, Outcome)], manual: &ManualReview) -> Vec<ExerciseScore> {
    let mut exercises: Vec<u8> = results.iter().map(|(check, _)| check.exercise).collect();
    exercises.sort_unstable();
    exercises.dedup();
    exercises
        .into_iter()
        .map(|exercise| score_exercise(exercise, results, manual))
        .collect()
}

/// Several exercises together: the mean of their scores (each out of 100).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overall {
    pub exercises: usize,
    pub tally: Tally,
}

impl Overall {
    pub fn level(&self) -> LevelRange {
        LevelRange::of(self.tally.won, self.tally.best())
    }
}

/// The mean of the exercises that have checks; `None` when none has.
pub fn overall(scores: &[ExerciseScore]) -> Option<Overall> {
    let scored: Vec<&ExerciseScore> = scores.iter().filter(|score| score.has_checks()).collect();
    if scored.is_empty() {
        return None;
    }
    let count = scored.len() as f64;
    let mut tally = Tally::default();
    for score in &scored {
        tally.add(&score.tally);
    }
    Some(Overall {
        exercises: scored.len(),
        tally: Tally {
            won: tally.won / count,
            lost: tally.lost / count,
            pending: tally.pending / count,
            unchecked: tally.unchecked / count,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!(close(actual, expected), "{actual} != {expected}");
    }

    fn check(exercise: u8, block: Block, criterion: &'static str, points: u32) -> Check {
        Check {
            exercise,
            block,
            criterion,
            points,
            title: "una comprobación de prueba",
            timeout: Duration::from_secs(1),
            run: |_| Box::pin(async { Ok(()) }),
        }
    }

    fn pass() -> Outcome {
        Outcome {
            result: Ok(()),
            elapsed: Duration::from_millis(5),
        }
    }

    fn fail(what: &str) -> Outcome {
        Outcome {
            result: Err(Failure::new(what).hint("mira la Pista 1")),
            elapsed: Duration::from_millis(5),
        }
    }

    fn criterion<'a>(score: &'a ExerciseScore, name: &str) -> &'a CriterionScore {
        score
            .criteria
            .iter()
            .find(|criterion| criterion.name == name)
            .unwrap_or_else(|| panic!("no criterion {name}"))
    }

    /// A full exercise: two núcleo criteria (weights 1 + 3), one calidad (2), one integración (1).
    fn full(outcomes: [Outcome; 4]) -> Vec<(Check, Outcome)> {
        let checks = [
            check(1, Block::Nucleo, "Chat por salas", 1),
            check(1, Block::Nucleo, "Avisos de entrada", 3),
            check(1, Block::Calidad, "Errores y desconexiones", 2),
            check(1, Block::Integracion, "Pruebas asíncronas", 1),
        ];
        checks.into_iter().zip(outcomes).collect()
    }

    #[test]
    fn levels_follow_the_seed_thresholds() {
        let cases = [
            (0.0, Level::NoAprobado),
            (69.99, Level::NoAprobado),
            (70.0, Level::Aprobado),
            (69.999_999_9, Level::Aprobado),
            (84.99, Level::Aprobado),
            (85.0, Level::Bueno),
            (94.99, Level::Bueno),
            (95.0, Level::Excelente),
            (100.0, Level::Excelente),
        ];
        for (score, level) in cases {
            assert_eq!(Level::from_score(score), level, "score {score}");
        }
        assert_eq!(Level::Excelente.name(), "Excelente");
        assert_eq!(Level::NoAprobado.id(), "no_aprobado");
    }

    #[test]
    fn a_level_range_is_decided_only_when_both_ends_agree() {
        assert_eq!(LevelRange::of(86.0, 90.0).decided(), Some(Level::Bueno));
        let open = LevelRange::of(84.0, 96.0);
        assert_eq!(open.decided(), None);
        assert_eq!(open.min, Level::Aprobado);
        assert_eq!(open.max, Level::Excelente);
        assert!(open.describe().contains("entre Aprobado y Excelente"));
    }

    #[test]
    fn blocks_scale_checks_by_their_weights_and_keep_manual_points_apart() {
        let score = score_exercise(
            1,
            &full([pass(), pass(), pass(), pass()]),
            &ManualReview::new(),
        );
        // Núcleo 60 over weights 1 + 3.
        assert_close(criterion(&score, "Chat por salas").tally.won, 15.0);
        assert_close(criterion(&score, "Avisos de entrada").tally.won, 45.0);
        // Calidad 25: 5 for the manual "Clean code y documentación", 20 for the one check.
        assert_close(criterion(&score, "Errores y desconexiones").tally.won, 20.0);
        let manual = criterion(&score, "Clean code y documentación");
        assert_close(manual.tally.pending, 5.0);
        assert_close(manual.tally.won, 0.0);
        assert_close(criterion(&score, "Pruebas asíncronas").tally.won, 15.0);
        assert_close(score.tally.won, 95.0);
        assert_close(score.tally.pending, 5.0);
        assert_close(score.tally.max(), 100.0);
        // 95 already, whatever the review says.
        assert_eq!(score.level().decided(), Some(Level::Excelente));
        assert!(score.notes.is_empty(), "{:?}", score.notes);
    }

    #[test]
    fn a_failed_check_loses_its_scaled_points_and_says_why() {
        let score = score_exercise(
            1,
            &full([pass(), fail("no difunde el aviso"), pass(), pass()]),
            &ManualReview::new(),
        );
        let lost = criterion(&score, "Avisos de entrada");
        assert_close(lost.tally.lost, 45.0);
        let reasons: Vec<&str> = lost
            .failed()
            .filter_map(|check| check.status.failure())
            .map(|failure| failure.what.as_str())
            .collect();
        assert_eq!(reasons, ["no difunde el aviso"]);
        assert_close(score.tally.won, 50.0);
        assert_close(score.tally.best(), 55.0);
        assert_eq!(score.level().decided(), Some(Level::NoAprobado));
        assert_eq!(
            score.block(Block::Nucleo).map(|block| block.tally.lost),
            Some(45.0)
        );
    }

    #[test]
    fn pending_manual_points_make_a_range_never_a_verdict() {
        // Loses the calidad check (20): 75 won, 5 pending → Aprobado for sure.
        let results = full([pass(), pass(), fail("se cae"), pass()]);
        let score = score_exercise(1, &results, &ManualReview::new());
        assert_close(score.tally.won, 75.0);
        assert_close(score.tally.pending, 5.0);
        assert_eq!(score.level().decided(), Some(Level::Aprobado));
        assert_eq!(score.pending_manual().count(), 1);

        // Loses the integración check instead (15): 80 won + 5 pending straddles Bueno.
        let results = full([pass(), pass(), pass(), fail("sin pruebas")]);
        let score = score_exercise(1, &results, &ManualReview::new());
        let range = score.level();
        assert_eq!((range.min, range.max), (Level::Aprobado, Level::Bueno));
        assert_eq!(range.decided(), None);

        // Once recorded, the range closes on the recorded points.
        let mut review = ManualReview::new();
        review
            .record(1, "codigo", 3.0, Some("funciones largas".into()))
            .unwrap();
        let score = score_exercise(1, &results, &review);
        assert_close(score.tally.won, 83.0);
        assert_close(score.tally.lost, 17.0);
        assert_close(score.tally.pending, 0.0);
        assert_eq!(score.level().decided(), Some(Level::Aprobado));
        assert_eq!(score.pending_manual().count(), 0);
        let manual = criterion(&score, "Clean code y documentación");
        assert_eq!(
            manual
                .manual
                .as_ref()
                .and_then(|manual| manual.mark.as_ref())
                .and_then(|mark| mark.comment.as_deref()),
            Some("funciones largas")
        );
    }

    #[test]
    fn an_empty_block_hands_its_weight_to_the_others() {
        let results = vec![
            (check(2, Block::Nucleo, "Cola de correos", 2), pass()),
            (check(2, Block::Calidad, "Reintentos", 1), pass()),
        ];
        let score = score_exercise(2, &results, &ManualReview::new());
        assert_close(score.tally.max(), 100.0);
        let nucleo = score.block(Block::Nucleo).map(|block| block.weight);
        let calidad = score.block(Block::Calidad).map(|block| block.weight);
        let integracion = score.block(Block::Integracion).map(|block| block.weight);
        assert_close(nucleo.unwrap_or_default(), 6000.0 / 85.0);
        assert_close(calidad.unwrap_or_default(), 2500.0 / 85.0);
        assert_close(integracion.unwrap_or_default(), 0.0);
        // The manual criterion keeps its 5 points; the check takes the rest of calidad.
        assert_close(
            criterion(&score, "Reintentos").tally.max(),
            2500.0 / 85.0 - 5.0,
        );
        assert_eq!(score.notes.len(), 1);
        assert!(score.notes[0].contains("integración"), "{:?}", score.notes);
    }

    #[test]
    fn a_block_with_only_manual_criteria_gives_them_the_whole_block() {
        // Exercise 6 with núcleo checks only: calidad is all "codigo", integración all manual.
        let results = vec![(check(6, Block::Nucleo, "Chat", 1), pass())];
        let score = score_exercise(6, &results, &ManualReview::new());
        assert_close(score.tally.max(), 100.0);
        assert_close(
            criterion(&score, "Clean code y documentación")
                .tally
                .pending,
            25.0,
        );
        assert_close(
            criterion(&score, "Containerización apropiada")
                .tally
                .pending,
            60.0 / 7.0,
        );
        assert_close(
            criterion(&score, "Testing de componentes asíncronos")
                .tally
                .pending,
            45.0 / 7.0,
        );
        assert_eq!(score.notes.len(), 2, "{:?}", score.notes);
        // A recorded mark is out of the criterion's own points, scaled to the block.
        let mut review = ManualReview::new();
        review.record(6, "contenedor", 2.0, None).unwrap();
        let score = score_exercise(6, &results, &review);
        let container = criterion(&score, "Containerización apropiada");
        assert_close(container.tally.won, 30.0 / 7.0);
        assert_close(container.tally.lost, 30.0 / 7.0);
    }

    #[test]
    fn unchecked_points_are_neither_won_nor_lost() {
        let results = vec![
            (check(6, Block::Nucleo, "Chat", 3), pass()),
            (check(6, Block::Calidad, "Recuperación", 1), pass()),
            (
                check(6, Block::Calidad, "Recuperación", 1),
                Outcome {
                    result: Err(not_checked(
                        "hace falta --command para reiniciar el servidor",
                    )),
                    elapsed: Duration::ZERO,
                },
            ),
            (check(6, Block::Integracion, "Autenticación", 1), pass()),
        ];
        let score = score_exercise(6, &results, &ManualReview::new());
        let recovery = criterion(&score, "Recuperación");
        // Calidad: 25 − 5 manual = 20 over two checks.
        assert_close(recovery.tally.won, 10.0);
        assert_close(recovery.tally.unchecked, 10.0);
        assert_close(recovery.tally.lost, 0.0);
        assert!(matches!(recovery.checks[1].status, Status::NotChecked(_)));
        assert_eq!(recovery.checks[1].status.id(), "not_checked");
        // Nothing the student can fix there: not the next failure.
        assert!(score.next_failure().is_none());
        // The automatic part over what could be checked: all won.
        let automatic = score.automatic();
        assert_close(automatic.won, 60.0 + 10.0 + 8.0);
        assert_close(automatic.unchecked, 10.0);
        assert_eq!(score.automatic_score().map(|s| s.round()), Some(100.0));
        assert_eq!(score.automatic_level(), Some(Level::Excelente));
        // The total is a range: 78 won, up to 100 with the review and the unchecked check.
        assert_close(score.tally.won, 78.0);
        assert_close(score.tally.best(), 100.0);
        assert_eq!(score.level().decided(), None);
    }

    #[test]
    fn the_automatic_level_of_exercise_6_drops_with_any_failed_criterion() {
        let results = vec![
            (check(6, Block::Nucleo, "Chat", 9), pass()),
            (
                check(6, Block::Nucleo, "Salas privadas", 1),
                fail("no es privada"),
            ),
            (check(6, Block::Calidad, "Límites", 1), pass()),
            (check(6, Block::Integracion, "Autenticación", 1), pass()),
        ];
        let score = score_exercise(6, &results, &ManualReview::new());
        // 6 of the 88 automatic points lost: 82/88 = 93.2 → Bueno, not Excelente.
        let automatic = score.automatic_score().unwrap_or_default();
        assert_close(automatic, 82.0 / 88.0 * 100.0);
        assert_eq!(score.automatic_level(), Some(Level::Bueno));
    }

    #[test]
    fn not_checked_failures_are_recognised_by_their_prefix() {
        assert!(is_not_checked(&not_checked("sin --command")));
        assert!(is_not_checked(&Failure::new("No comprobado: sin --outbox")));
        assert!(!is_not_checked(&Failure::new("no comprobó el token")));
        assert!(!is_not_checked(&Failure::new("falta el aviso")));
    }

    #[test]
    fn the_next_failure_follows_the_exercise_order() {
        let results = vec![
            (check(3, Block::Calidad, "Caché", 1), pass()),
            (check(3, Block::Nucleo, "Eventos", 1), fail("primero")),
            (check(3, Block::Calidad, "Reconexión", 1), fail("segundo")),
            (check(3, Block::Nucleo, "Eventos", 1), fail("tercero")),
        ];
        let score = score_exercise(3, &results, &ManualReview::new());
        let next = score
            .next_failure()
            .and_then(|check| check.status.failure());
        assert_eq!(next.map(|failure| failure.what.as_str()), Some("primero"));
        // Criteria come block by block, each in order of first appearance.
        let names: Vec<&str> = score
            .criteria
            .iter()
            .map(|criterion| criterion.name)
            .collect();
        assert_eq!(
            names,
            [
                "Eventos",
                "Caché",
                "Reconexión",
                "Clean code y documentación"
            ]
        );
    }

    #[test]
    fn points_always_add_up_to_one_hundred() {
        let blocks = [Block::Nucleo, Block::Calidad, Block::Integracion];
        for exercise in 1..=6 {
            for mask in 1u32..8 {
                for weights in [[1, 1, 1], [5, 2, 7], [10, 1, 3]] {
                    let results: Vec<(Check, Outcome)> = blocks
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .flat_map(|(i, block)| {
                            (0..=i).map(move |n| {
                                let outcome = if n % 2 == 0 { pass() } else { fail("no") };
                                (check(exercise, *block, "Criterio", weights[i]), outcome)
                            })
                        })
                        .collect();
                    let score = score_exercise(exercise, &results, &ManualReview::new());
                    assert_close(score.tally.max(), 100.0);
                    let by_blocks: f64 = score.blocks.iter().map(|block| block.weight).sum();
                    assert_close(by_blocks, 100.0);
                    let by_criteria: f64 = score
                        .criteria
                        .iter()
                        .map(|criterion| criterion.tally.max())
                        .sum();
                    assert_close(by_criteria, 100.0);
                }
            }
        }
    }

    #[test]
    fn other_exercises_are_ignored_and_score_all_groups_them() {
        let mut results = full([pass(), pass(), pass(), pass()]);
        results.push((
            check(2, Block::Nucleo, "Cola de correos", 1),
            fail("no encola"),
        ));
        let one = score_exercise(1, &results, &ManualReview::new());
        assert_eq!(one.checks().count(), 4);
        let all = score_all(&results, &ManualReview::new());
        assert_eq!(
            all.iter().map(|score| score.exercise).collect::<Vec<_>>(),
            [1, 2]
        );
        let overall = overall(&all).unwrap_or_else(|| panic!("no overall"));
        assert_eq!(overall.exercises, 2);
        // Exercise 1: 95 (+5 pending); exercise 2: 0 won, only núcleo and calidad's manual.
        assert_close(overall.tally.won, 47.5);
        assert_close(overall.tally.max(), 100.0);
        assert_eq!(overall.level().decided(), Some(Level::NoAprobado));
    }

    #[test]
    fn an_exercise_without_checks_has_no_score() {
        let score = score_exercise(4, &[], &ManualReview::new());
        assert!(!score.has_checks());
        assert_eq!(score.automatic_score(), None);
        assert!(overall(&[score]).is_none());
    }

    #[test]
    fn the_review_refuses_unknown_criteria_and_points_out_of_range() {
        let mut review = ManualReview::new();
        let error = review.record(1, "contenedor", 1.0, None).unwrap_err();
        assert!(error.contains("codigo"), "{error}");
        assert!(review.record(6, "contenedor", 4.5, None).is_err());
        assert!(review.record(6, "contenedor", -1.0, None).is_err());
        assert!(review.record(6, "contenedor", f64::NAN, None).is_err());
        assert!(review.record(9, "codigo", 1.0, None).is_err());
        assert!(review.is_empty());
        review.record(6, "contenedor", 4.0, None).unwrap();
        assert_eq!(
            review.get(6, "contenedor").map(|mark| mark.points),
            Some(4.0)
        );
    }

    #[test]
    fn the_manual_criteria_are_consistent_data() {
        for exercise in 1..=6 {
            let criteria = manual_criteria(exercise);
            assert!(!criteria.is_empty(), "exercise {exercise}");
            let mut ids: Vec<&str> = criteria.iter().map(|manual| manual.id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), criteria.len(), "duplicate ids in {exercise}");
            for block in BLOCKS {
                let manual: f64 = criteria
                    .iter()
                    .filter(|manual| manual.block == block)
                    .map(|manual| manual.points)
                    .sum();
                // The automatic checks always keep most of each block.
                assert!(
                    manual <= f64::from(block.weight()) / 2.0,
                    "{exercise} {block:?}"
                );
            }
        }
        for manual in MANUAL_CRITERIA {
            let points: Vec<f64> = manual.bands.iter().map(|band| band.points).collect();
            assert_eq!(points.first(), Some(&manual.points), "{}", manual.id);
            assert_eq!(points.last(), Some(&0.0), "{}", manual.id);
            assert!(
                points.windows(2).all(|pair| pair[0] > pair[1]),
                "{}",
                manual.id
            );
        }
    }

    #[test]
    fn every_level_lists_the_seeds_four_items() {
        for level in [Level::Aprobado, Level::Bueno, Level::Excelente] {
            let items = LEVEL_ITEMS
                .iter()
                .filter(|item| item.level == level)
                .count();
            assert_eq!(items, 4, "{level:?}");
        }
        assert!(LEVEL_ITEMS.iter().all(|item| !item.assessed_by.is_empty()));
    }
}
