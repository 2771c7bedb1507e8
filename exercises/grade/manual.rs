//! The instructor's review file (`--manual FILE`, TOML): points per manual criterion.
//!
//! ```toml
//! [ej01]
//! codigo = 4
//!
//! [ej06]
//! codigo = { puntos = 5, comentario = "claro y documentado" }
//! contenedor = 2
//! ```
//!
//! The keys are the ids of `score::MANUAL_CRITERIA`; anything else is refused, so a typo never
//! turns into "pending" silently.

use std::path::Path;

use exercises::checks::score::ManualReview;
use toml::Value;

/// Reads and validates a review file; the error is a Spanish sentence naming the file.
pub fn load(path: &Path) -> Result<ManualReview, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("no pude leer {}: {error}", path.display()))?;
    parse(&text).map_err(|error| format!("{}: {error}", path.display()))
}

/// Parses the text of a review file.
pub fn parse(text: &str) -> Result<ManualReview, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| format!("no es TOML válido: {error}"))?;
    let mut review = ManualReview::new();
    for (section, criteria) in &table {
        let exercise = exercise_of(section)
            .ok_or_else(|| format!("«[{section}]» no es un ejercicio: usa [ej01] … [ej06]"))?;
        let Value::Table(criteria) = criteria else {
            return Err(format!(
                "«{section}» debe ser una sección: [{section}] y debajo «codigo = 4»"
            ));
        };
        for (id, value) in criteria {
            let (points, comment) = mark_of(value)
                .ok_or_else(|| format!("[{section}] {id}: usa «{id} = 4» o «{id} = {{ puntos = 4, comentario = \"…\" }}»"))?;
            review.record(exercise, id, points, comment)?;
        }
    }
    Ok(review)
}

fn exercise_of(section: &str) -> Option<u8> {
    let digits = section.strip_prefix("ej")?;
    if digits.len() != 2 {
        return None;
    }
    digits.parse().ok().filter(|n| (1..=6).contains(n))
}

fn mark_of(value: &Value) -> Option<(f64, Option<String>)> {
    match value {
        Value::Integer(points) => Some((*points as f64, None)),
        Value::Float(points) => Some((*points, None)),
        Value::Table(table) => {
            if table
                .keys()
                .any(|key| key != "puntos" && key != "comentario")
            {
                return None;
            }
            let (points, _) = mark_of(table.get("puntos")?)?;
            let comment = match table.get("comentario") {
                None => None,
                Some(Value::String(comment)) => Some(comment.clone()),
                Some(_) => return None,
            };
            Some((points, comment))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_commented_marks() {
        let review = parse(
            r#"
            [ej01]
            codigo = 4

            [ej06]
            codigo = { puntos = 2.5, comentario = "funciones largas" }
            contenedor = 4
            "#,
        )
        .unwrap();
        assert_eq!(review.get(1, "codigo").map(|m| m.points), Some(4.0));
        let code = review.get(6, "codigo").unwrap();
        assert_eq!(code.points, 2.5);
        assert_eq!(code.comment.as_deref(), Some("funciones largas"));
        assert_eq!(review.get(6, "contenedor").map(|m| m.points), Some(4.0));
        assert!(review.get(6, "pruebas").is_none());
    }

    #[test]
    fn refuses_what_would_otherwise_be_silently_pending() {
        let cases = [
            ("[ej1]\ncodigo = 4", "no es un ejercicio"),
            ("[ej07]\ncodigo = 4", "no es un ejercicio"),
            ("ej01 = 4", "debe ser una sección"),
            ("[ej01]\ncodgo = 4", "no tiene el criterio manual «codgo»"),
            ("[ej01]\ncontenedor = 4", "no tiene el criterio manual"),
            ("[ej01]\ncodigo = 9", "fuera de"),
            ("[ej01]\ncodigo = \"cuatro\"", "usa «codigo = 4»"),
            (
                "[ej01]\ncodigo = { puntos = 4, nota = \"x\" }",
                "usa «codigo = 4»",
            ),
            ("[ej01\ncodigo = 4", "no es TOML válido"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_committed_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manual.example.toml");
        let review = load(&path).unwrap();
        assert!(!review.is_empty());
    }

    #[test]
    fn a_missing_file_names_itself() {
        let error = load(Path::new("/no/existe.toml")).unwrap_err();
        assert!(error.contains("/no/existe.toml"), "{error}");
    }
}
