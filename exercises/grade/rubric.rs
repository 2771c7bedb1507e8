//! `grade --rubric`: `rubric.md`, generated from the registry of checks and the rubric's data in
//! `score.rs`, so the points it documents are the points the grader gives. The prose lives in
//! `rubric_template.md`; a test fails when the committed `rubric.md` differs from this output.

use std::fmt::Write as _;
use std::time::Duration;

use Block::{Calidad, Integracion, Nucleo};
use exercises::checks::score::{
    self, ExerciseScore, LEVEL_ITEMS, Level, MANUAL_CRITERIA, ManualReview, Place,
};
use exercises::checks::{self, Block, Check, Outcome, ej06};

use crate::text::points;

const TEMPLATE: &str = include_str!("rubric_template.md");

/// Where a criterion of the seed's "Criterios de Evaluación" is assessed.
struct SeedCriterion {
    block: Block,
    name: &'static str,
    /// The criteria whose automatic checks measure it.
    automatic: &'static [Place],
    /// Ids of manual criteria.
    manual: &'static [&'static str],
    note: &'static str,
}

const SEED: &[SeedCriterion] = &[
    SeedCriterion {
        block: Nucleo,
        name: "WebSockets funcionando correctamente",
        automatic: &[
            Place::block(1, Nucleo),
            Place::criterion(4, Nucleo, "Entrega en tiempo real"),
            Place::criterion(5, Nucleo, "Bucle de ticks y difusión"),
            Place::criterion(5, Nucleo, "Entrar, salir y reconectar"),
            Place::criterion(6, Nucleo, ej06::WEBSOCKETS),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Nucleo,
        name: "Background Tasks procesando trabajos",
        automatic: &[
            Place::block(2, Nucleo),
            Place::criterion(4, Integracion, "E-mail en segundo plano"),
            Place::criterion(6, Nucleo, ej06::JOBS),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Nucleo,
        name: "Server-Sent Events actualizando en tiempo real",
        automatic: &[
            Place::criterion(3, Nucleo, "Stream SSE en vivo"),
            Place::criterion(3, Nucleo, "Reanudación con Last-Event-ID"),
            Place::criterion(6, Nucleo, ej06::SSE),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Nucleo,
        name: "Integración con sistema de autenticación existente",
        automatic: &[Place::criterion(6, Nucleo, ej06::AUTH)],
        manual: &[],
        note: "registro, login, token en el WebSocket, límite de intentos y rutas de admin, \
               contra el proyecto en marcha",
    },
    SeedCriterion {
        block: Calidad,
        name: "Manejo apropiado de conexiones",
        automatic: &[
            Place::criterion(1, Calidad, "Errores y desconexiones"),
            Place::criterion(1, Calidad, "Cola acotada por conexión"),
            Place::criterion(4, Calidad, "Conexiones y errores"),
            Place::criterion(5, Calidad, "Entrar, salir y reconectar"),
            Place::criterion(6, Calidad, ej06::CONNECTIONS),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Calidad,
        name: "Error handling y recovery",
        automatic: &[
            Place::criterion(1, Calidad, "Errores y desconexiones"),
            Place::criterion(2, Calidad, "Reintentos con backoff"),
            Place::criterion(3, Calidad, "Validación y errores"),
            Place::criterion(3, Calidad, "Reanudación con Last-Event-ID"),
            Place::criterion(3, Calidad, "Stream SSE en vivo"),
            Place::criterion(4, Calidad, "Conexiones y errores"),
            Place::criterion(5, Calidad, "Entradas inválidas y límites"),
            Place::criterion(6, Calidad, ej06::ERRORS),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Calidad,
        name: "Performance y optimización",
        automatic: &[
            Place::criterion(1, Calidad, "Cola acotada por conexión"),
            Place::criterion(3, Nucleo, "Caché con TTL e invalidación"),
            Place::criterion(3, Calidad, "Caché con TTL e invalidación"),
            Place::criterion(5, Calidad, "Bucle de ticks y difusión"),
            Place::criterion(6, Calidad, ej06::PERFORMANCE),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Calidad,
        name: "Clean code y documentación",
        automatic: &[],
        manual: &["codigo"],
        note: "",
    },
    SeedCriterion {
        block: Integracion,
        name: "Uso de conocimientos de semanas anteriores",
        automatic: &[
            Place::criterion(1, Integracion, "Hub reutilizable y concurrente"),
            Place::criterion(2, Integracion, "Worker y reutilización"),
            Place::criterion(4, Integracion, "E-mail en segundo plano"),
            Place::criterion(6, Integracion, ej06::EARLIER_WEEKS),
        ],
        manual: &[],
        note: "",
    },
    SeedCriterion {
        block: Integracion,
        name: "Containerización apropiada",
        automatic: &[],
        manual: &["contenedor"],
        note: "",
    },
    SeedCriterion {
        block: Integracion,
        name: "Testing de componentes asíncronos",
        automatic: &[
            Place::criterion(1, Integracion, "Hub reutilizable y concurrente"),
            Place::criterion(3, Integracion, "Pruebas asíncronas"),
            Place::criterion(5, Integracion, "Protocolo de extremo a extremo"),
        ],
        manual: &["pruebas"],
        note: "en los ejercicios 1–5, que tu código se deje probar de extremo a extremo y con \
               el reloj pausado; en el 6, la suite del propio proyecto",
    },
    SeedCriterion {
        block: Integracion,
        name: "Deployment funcional",
        automatic: &[Place::criterion(6, Integracion, ej06::DEPLOYMENT)],
        manual: &["contenedor"],
        note: "además, todo el ejercicio 6 se corrige contra el proyecto desplegado",
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

/// A place as the rubric reads it: "ej01 · núcleo (Chat, Avisos)" or "ej03 · núcleo · Caché…".
fn where_assessed(scores: &[ExerciseScore], place: &Place) -> String {
    let prefix = format!("ej{:02} · {}", place.exercise, place.block.name());
    if let Some(criterion) = place.criterion {
        return format!("{prefix} · {criterion}");
    }
    let names: Vec<&str> = scores
        .iter()
        .filter(|score| score.exercise == place.exercise)
        .flat_map(|score| score.criteria.iter())
        .filter(|criterion| criterion.block == place.block && !criterion.checks.is_empty())
        .map(|criterion| criterion.name)
        .collect();
    if names.is_empty() {
        format!("{prefix} (sin comprobaciones todavía)")
    } else {
        format!("{prefix} ({})", names.join(", "))
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
                .map(|place| where_assessed(scores, place))
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
                .map(|place| where_assessed(scores, place))
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
            "### {} (`{}`)\n\n{} {} · bloque de {} · {} puntos.\n\n**Cómo:** {}\n",
            manual.criterion,
            manual.id,
            if exercises.len() == 1 {
                "Ejercicio"
            } else {
                "Ejercicios"
            },
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
    fn every_place_the_rubric_names_has_checks() {
        let registry = registry();
        let places = SEED
            .iter()
            .flat_map(|criterion| criterion.automatic)
            .chain(LEVEL_ITEMS.iter().flat_map(|item| item.assessed_by));
        for place in places {
            assert!(
                registry.iter().any(|check| place.holds(check)),
                "no check counts for {place:?}: was the criterion renamed?"
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
