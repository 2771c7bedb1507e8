//! `grade --rubric`: `rubric.md`, generated from the registry of checks and the rubric's data in
//! `score.rs`, so the points it documents are the points the grader gives. The prose lives in
//! `rubric_template.md`; a test fails when the committed `rubric.md` differs from this output.

use std::fmt::Write as _;
use std::time::Duration;

use exercises::checks::score::{
    self, ExerciseScore, LEVEL_ITEMS, Level, MANUAL_CRITERIA, ManualReview,
};
use exercises::checks::{self, Block, Check, Outcome};

use crate::text::points;

const TEMPLATE: &str = include_str!("rubric_template.md");

/// Where a criterion of the seed's "Criterios de Evaluación" is assessed.
struct SeedCriterion {
    block: Block,
    name: &'static str,
    /// `(exercise, block)` whose automatic criteria measure it.
    automatic: &'static [(u8, Block)],
    /// Ids of manual criteria.
    manual: &'static [&'static str],
    note: &'static str,
}

const ALL_NUCLEO: &[(u8, Block)] = &[
    (1, Block::Nucleo),
    (4, Block::Nucleo),
    (5, Block::Nucleo),
    (6, Block::Nucleo),
];

const SEED: &[SeedCriterion] = &[
    SeedCriterion {
        block: Block::Nucleo,
        name: "WebSockets funcionando correctamente",
        automatic: ALL_NUCLEO,
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Block::Nucleo,
        name: "Background Tasks procesando trabajos",
        automatic: &[(2, Block::Nucleo), (4, Block::Nucleo), (6, Block::Nucleo)],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Block::Nucleo,
        name: "Server-Sent Events actualizando en tiempo real",
        automatic: &[(3, Block::Nucleo), (6, Block::Nucleo)],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Block::Nucleo,
        name: "Integración con sistema de autenticación existente",
        automatic: &[(6, Block::Integracion)],
        manual: &[],
        note: "registro, login, tokens y su límite de intentos, contra el proyecto en marcha",
    },
    SeedCriterion {
        block: Block::Calidad,
        name: "Manejo apropiado de conexiones",
        automatic: &[
            (1, Block::Calidad),
            (3, Block::Calidad),
            (5, Block::Calidad),
            (6, Block::Calidad),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Block::Calidad,
        name: "Error handling y recovery",
        automatic: &[
            (1, Block::Calidad),
            (2, Block::Calidad),
            (3, Block::Calidad),
            (4, Block::Calidad),
            (5, Block::Calidad),
            (6, Block::Calidad),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Block::Calidad,
        name: "Performance y optimización",
        automatic: &[(3, Block::Calidad), (6, Block::Calidad)],
        manual: &[],
        note: "caché con TTL e invalidación, límites de tamaño y de ritmo",
    },
    SeedCriterion {
        block: Block::Calidad,
        name: "Clean code y documentación",
        automatic: &[],
        manual: &["codigo"],
        note: "",
    },
    SeedCriterion {
        block: Block::Integracion,
        name: "Uso de conocimientos de semanas anteriores",
        automatic: &[
            (1, Block::Integracion),
            (2, Block::Integracion),
            (3, Block::Integracion),
            (4, Block::Integracion),
            (5, Block::Integracion),
            (6, Block::Integracion),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Block::Integracion,
        name: "Containerización apropiada",
        automatic: &[],
        manual: &["contenedor"],
        note: "",
    },
    SeedCriterion {
        block: Block::Integracion,
        name: "Testing de componentes asíncronos",
        automatic: &[
            (1, Block::Integracion),
            (2, Block::Integracion),
            (3, Block::Integracion),
            (4, Block::Integracion),
            (5, Block::Integracion),
        ],
        manual: &["pruebas"],
        note: "en los ejercicios 1–5, que tu código se deje probar (reloj pausado, \
               dependencias inyectadas); en el 6, la suite del propio proyecto",
    },
    SeedCriterion {
        block: Block::Integracion,
        name: "Deployment funcional",
        automatic: &[
            (6, Block::Nucleo),
            (6, Block::Calidad),
            (6, Block::Integracion),
        ],
        manual: &["contenedor"],
        note: "el ejercicio 6 se corrige contra el proyecto desplegado: si no responde, no \
               pasa ninguna comprobación",
    },
];

/// Every check of the rubric: exercises 1–5 and the network checks of exercise 6.
fn registry() -> Vec<Check> {
    let mut all = checks::all();
    all.extend(checks::ej06::checks());
    all
}

/// Each exercise scored as if every check passed: the points each criterion and check is worth.
fn full_marks(registry: &[Check]) -> Vec<ExerciseScore> {
    let results: Vec<(Check, Outcome)> = registry
        .iter()
        .map(|check| {
            let outcome = Outcome {
                result: Ok(()),
                elapsed: Duration::ZERO,
            };
            (check.clone(), outcome)
        })
        .collect();
    (1..=6)
        .map(|exercise| score::score_exercise(exercise, &results, &ManualReview::new()))
        .collect()
}

/// The criteria names of one block of one exercise, as a phrase: "ej01 · núcleo (Chat, Avisos)".
fn where_assessed(scores: &[ExerciseScore], exercise: u8, block: Block) -> String {
    let names: Vec<&str> = scores
        .iter()
        .filter(|score| score.exercise == exercise)
        .flat_map(|score| score.criteria.iter())
        .filter(|criterion| criterion.block == block && !criterion.checks.is_empty())
        .map(|criterion| criterion.name)
        .collect();
    if names.is_empty() {
        format!(
            "ej{exercise:02} · {} (sin comprobaciones todavía)",
            block.name()
        )
    } else {
        format!("ej{exercise:02} · {} ({})", block.name(), names.join(", "))
    }
}

fn manual_name(id: &str) -> String {
    MANUAL_CRITERIA
        .iter()
        .find(|manual| manual.id == id)
        .map(|manual| format!("{} (`{id}`)", manual.criterion))
        .unwrap_or_else(|| format!("`{id}`"))
}

fn levels(scores: &[ExerciseScore]) -> String {
    let mut out = String::from("| Nivel | Desde | Lo que pide la semana | Dónde se evalúa |\n");
    out.push_str("|---|---|---|---|\n");
    let _ = writeln!(
        out,
        "| **{}** | menos de {:.0} | — | — |",
        Level::NoAprobado.name(),
        Level::Aprobado.threshold()
    );
    for level in [Level::Aprobado, Level::Bueno, Level::Excelente] {
        for (i, item) in LEVEL_ITEMS
            .iter()
            .filter(|item| item.level == level)
            .enumerate()
        {
            let (name, from) = if i == 0 {
                (
                    format!("**{}** ({})", level.name(), level.title()),
                    format!("{:.0}", level.threshold()),
                )
            } else {
                (String::new(), String::new())
            };
            let places: Vec<String> = item
                .assessed_by
                .iter()
                .map(|(exercise, block)| where_assessed(scores, *exercise, *block))
                .collect();
            let _ = writeln!(
                out,
                "| {name} | {from} | {} | {} |",
                item.item,
                places.join("<br>")
            );
        }
    }
    out.trim_end().to_owned()
}

fn seed(scores: &[ExerciseScore]) -> String {
    let mut out = String::new();
    for block in score::BLOCKS {
        let _ = writeln!(
            out,
            "### {} ({}, {} puntos)\n",
            score::block_title(block),
            block.name(),
            block.weight()
        );
        out.push_str("| Criterio de la semana | Comprobaciones automáticas | Revisión manual |\n");
        out.push_str("|---|---|---|\n");
        for criterion in SEED.iter().filter(|criterion| criterion.block == block) {
            let mut automatic: Vec<String> = criterion
                .automatic
                .iter()
                .map(|(exercise, block)| where_assessed(scores, *exercise, *block))
                .collect();
            if !criterion.note.is_empty() {
                automatic.push(format!("*{}*", criterion.note));
            }
            let manual: Vec<String> = criterion.manual.iter().map(|id| manual_name(id)).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                criterion.name,
                if automatic.is_empty() {
                    "—".to_owned()
                } else {
                    automatic.join("<br>")
                },
                if manual.is_empty() {
                    "—".to_owned()
                } else {
                    manual.join("<br>")
                }
            );
        }
        out.push('\n');
    }
    out.trim_end().to_owned()
}

fn exercises(scores: &[ExerciseScore]) -> String {
    let mut out = String::new();
    for score in scores {
        let _ = writeln!(
            out,
            "### Ejercicio {} · {}\n",
            score.exercise,
            score::exercise_title(score.exercise)
        );
        if !score.has_checks() {
            out.push_str(
                "Todavía no tiene comprobaciones automáticas: el corrector no le da nota.\n\n",
            );
            continue;
        }
        out.push_str("| Bloque | Criterio | Puntos | Cómo se evalúa |\n");
        out.push_str("|---|---|---:|---|\n");
        for criterion in &score.criteria {
            let mut how: Vec<String> = criterion
                .checks
                .iter()
                .map(|check| format!("`{}` ({})", check.check.name(), points(check.value)))
                .collect();
            if let Some(manual) = &criterion.manual {
                how.push(format!(
                    "revisión manual `{}` ({}), ver [la guía](#criterios-de-revisión-manual)",
                    manual.criterion.id,
                    points(manual.value)
                ));
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                criterion.block.name(),
                criterion.name,
                points(criterion.tally.max()),
                how.join("<br>")
            );
        }
        let blocks: Vec<String> = score
            .blocks
            .iter()
            .map(|block| format!("{} {}", block.block.name(), points(block.weight)))
            .collect();
        let _ = writeln!(
            out,
            "| | **Total** | **{}** | {} |\n",
            points(score.tally.max()),
            blocks.join(" · ")
        );
        for note in &score.notes {
            let _ = writeln!(out, "Nota: {note}.\n");
        }
    }
    out.trim_end().to_owned()
}

fn manuals() -> String {
    let mut out = String::new();
    for manual in MANUAL_CRITERIA {
        let exercises: Vec<String> = manual.exercises.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(
            out,
            "### {} (`{}`)\n\nEjercicios {} · bloque de {} · {} puntos.\n\n**Cómo:** {}\n",
            manual.criterion,
            manual.id,
            exercises.join(", "),
            manual.block.name(),
            points(manual.points),
            manual.how
        );
        out.push_str("| Puntos | Cuándo |\n|---:|---|\n");
        for band in manual.bands {
            let _ = writeln!(out, "| {} | {} |", points(band.points), band.description);
        }
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// The whole of `rubric.md`.
pub fn markdown() -> String {
    let registry = registry();
    let scores = full_marks(&registry);
    TEMPLATE
        .replace("{{niveles}}", &levels(&scores))
        .replace("{{semilla}}", &seed(&scores))
        .replace("{{ejercicios}}", &exercises(&scores))
        .replace("{{manuales}}", &manuals())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_rubric_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rubric.md");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == markdown(),
            "rubric.md no coincide con las comprobaciones: regenéralo con\n  \
             cargo run -q -p exercises --bin grade -- --rubric > rubric.md"
        );
    }

    #[test]
    fn every_placeholder_is_filled_and_every_criterion_is_there() {
        let text = markdown();
        assert!(!text.contains("{{"), "a placeholder was left");
        for criterion in SEED {
            assert!(text.contains(criterion.name), "{}", criterion.name);
        }
        for manual in MANUAL_CRITERIA {
            assert!(
                text.contains(&format!("(`{}`)", manual.id)),
                "{}",
                manual.id
            );
        }
        for item in LEVEL_ITEMS {
            assert!(text.contains(item.item), "{}", item.item);
        }
        for check in registry() {
            assert!(
                text.contains(&format!("`{}`", check.name())),
                "{}",
                check.name()
            );
        }
    }

    #[test]
    fn the_seed_criteria_are_the_twelve_of_the_week() {
        for block in score::BLOCKS {
            assert_eq!(SEED.iter().filter(|c| c.block == block).count(), 4);
        }
        for criterion in SEED {
            for id in criterion.manual {
                assert!(MANUAL_CRITERIA.iter().any(|m| m.id == *id), "{id}");
            }
        }
    }

    #[test]
    fn each_exercise_adds_up_to_one_hundred() {
        // Whatever checks the registry holds today.
        let scores = full_marks(&registry());
        for score in scores.iter().filter(|score| score.has_checks()) {
            assert!(
                (score.tally.max() - 100.0).abs() < 1e-9,
                "ej{}",
                score.exercise
            );
        }
    }
}
