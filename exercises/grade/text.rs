//! The report for people: per exercise, block and criterion, points won and lost and why.

use std::io::{self, Write};

use exercises::checks::Failure;
use exercises::checks::score::{
    self, CheckScore, CriterionScore, ExerciseScore, Overall, Status, Tally,
};

/// ANSI colours on a terminal (unless `NO_COLOR`), nothing otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    pub color: bool,
}

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn ok(self, text: &str) -> String {
        self.wrap("32", text)
    }
    fn bad(self, text: &str) -> String {
        self.wrap("31", text)
    }
    fn open(self, text: &str) -> String {
        self.wrap("33", text)
    }
    fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }
    fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }
}

/// `12.5`, never `-0.0`.
pub fn points(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    format!("{:.1}", if rounded == 0.0 { 0.0 } else { rounded })
}

/// What the student reads after each exercise: "80.0 de 100 (+5.0 pendientes) → Bueno".
fn total_line(tally: &Tally, level: score::LevelRange) -> String {
    let mut line = format!("{} de {}", points(tally.won), points(tally.max()));
    if tally.pending > 0.0 {
        line.push_str(&format!(
            " (+{} pendientes de revisión manual)",
            points(tally.pending)
        ));
    }
    if tally.unchecked > 0.0 {
        line.push_str(&format!(" (+{} no comprobados)", points(tally.unchecked)));
    }
    format!("{line} → {}", level.describe())
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|line| format!("{pad}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn failure_text(failure: &Failure) -> String {
    failure.to_string()
}

/// The full report of `grade` (and `grade --project`).
pub fn report(
    out: &mut dyn Write,
    scores: &[ExerciseScore],
    overall: Option<&Overall>,
    paint: Paint,
) -> io::Result<()> {
    for score in scores {
        exercise(out, score, paint)?;
        writeln!(out)?;
    }
    pending_review(out, scores, paint)?;
    if scores.len() > 1 {
        summary(out, scores, overall, paint)?;
    }
    Ok(())
}

fn exercise(out: &mut dyn Write, score: &ExerciseScore, paint: Paint) -> io::Result<()> {
    let title = format!(
        "Ejercicio {} · {}",
        score.exercise,
        score::exercise_title(score.exercise)
    );
    writeln!(out, "{}", paint.bold(&title))?;
    if !score.has_checks() {
        writeln!(
            out,
            "  todavía no tiene comprobaciones automáticas: no hay nota que dar"
        )?;
        return Ok(());
    }
    for block in &score.blocks {
        if block.weight <= 0.0 {
            continue;
        }
        writeln!(
            out,
            "  {} ({}) · {} de {}",
            score::block_title(block.block),
            block.block.name(),
            points(block.tally.won),
            points(block.weight)
        )?;
        for criterion in score
            .criteria
            .iter()
            .filter(|criterion| criterion.block == block.block)
        {
            criterion_lines(out, criterion, paint)?;
        }
    }
    for note in &score.notes {
        writeln!(out, "  {}", paint.dim(&format!("Nota: {note}.")))?;
    }
    writeln!(
        out,
        "  {} {}",
        paint.bold("Total:"),
        total_line(&score.tally, score.level())
    )?;
    if let Some(automatic) = score.automatic_score() {
        let auto = score.automatic();
        writeln!(
            out,
            "  Parte automática: {} de {} ({:.0} %)",
            points(auto.won),
            points(auto.won + auto.lost),
            automatic
        )?;
    }
    match score.next_failure() {
        Some(next) => writeln!(
            out,
            "  {} arregla «{}»",
            paint.bold("Siguiente paso:"),
            next.check.name()
        )?,
        None if score.automatic().unchecked > 0.0 => {
            let unchecked = score
                .checks()
                .filter(|check| matches!(check.status, Status::NotChecked(_)))
                .count();
            writeln!(
                out,
                "  {} {unchecked} no se pudieron hacer aquí (lee arriba por qué).",
                paint.ok("Todas las comprobaciones hechas pasan;")
            )?
        }
        None => writeln!(out, "  {}", paint.ok("Todas las comprobaciones pasan."))?,
    }
    Ok(())
}

fn criterion_lines(
    out: &mut dyn Write,
    criterion: &CriterionScore,
    paint: Paint,
) -> io::Result<()> {
    let tally = criterion.tally;
    let mark = if tally.lost > 0.0 {
        paint.bad("✘")
    } else if tally.is_open() {
        paint.open("…")
    } else {
        paint.ok("✔")
    };
    let mut line = format!(
        "    {mark} {:<40} {:>5} de {:<5}",
        criterion.name,
        points(tally.won),
        points(tally.max())
    );
    if tally.lost > 0.0 {
        line.push_str(&paint.bad(&format!(" pierdes {}", points(tally.lost))));
    }
    if !criterion.checks.is_empty() {
        let passed = criterion
            .checks
            .iter()
            .filter(|check| check.status == Status::Passed)
            .count();
        line.push_str(&paint.dim(&format!(
            "  ({passed} de {} comprobaciones)",
            criterion.checks.len()
        )));
    }
    writeln!(out, "{}", line.trim_end())?;
    for check in &criterion.checks {
        check_lines(out, check, paint)?;
    }
    if let Some(manual) = &criterion.manual {
        match &manual.mark {
            None => writeln!(
                out,
                "        {} revisión manual pendiente («{}», {} puntos): la hace el instructor",
                paint.open("…"),
                manual.criterion.id,
                points(manual.value)
            )?,
            Some(mark) => {
                let comment = mark
                    .comment
                    .as_deref()
                    .map(|comment| format!(": {comment}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "        revisión manual: {} de {}{comment}",
                    points(mark.points),
                    points(manual.criterion.points)
                )?;
            }
        }
    }
    Ok(())
}

fn check_lines(out: &mut dyn Write, check: &CheckScore, paint: Paint) -> io::Result<()> {
    match &check.status {
        Status::Passed => Ok(()),
        Status::Failed(failure) => {
            writeln!(
                out,
                "        {} {} {}",
                paint.bad("✘"),
                check.check.name(),
                paint.bad(&format!("(−{})", points(check.value)))
            )?;
            writeln!(out, "{}", indent(&failure_text(failure), 12))
        }
        Status::NotChecked(failure) => {
            writeln!(
                out,
                "        {} {} {}",
                paint.open("…"),
                check.check.name(),
                paint.open(&format!("({} no comprobados)", points(check.value)))
            )?;
            writeln!(out, "{}", indent(&failure_text(failure), 12))
        }
    }
}

/// What the instructor must still do by hand.
fn pending_review(out: &mut dyn Write, scores: &[ExerciseScore], paint: Paint) -> io::Result<()> {
    let pending: Vec<(u8, &score::ManualScore)> = scores
        .iter()
        .filter(|score| score.has_checks())
        .flat_map(|score| score.pending_manual().map(move |m| (score.exercise, m)))
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{}",
        paint.bold("Pendiente de revisión manual (la hace el instructor; guía en rubric.md):")
    )?;
    // One line per criterion, with the exercises it is pending in.
    let mut seen: Vec<&str> = Vec::new();
    for (_, manual) in &pending {
        let id = manual.criterion.id;
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let exercises: Vec<String> = pending
            .iter()
            .filter(|(_, other)| other.criterion.id == id)
            .map(|(exercise, other)| format!("ej{exercise:02} ({})", points(other.value)))
            .collect();
        writeln!(
            out,
            "  {} («{id}», {}) en {}: {}",
            manual.criterion.criterion,
            manual.criterion.block.name(),
            exercises.join(", "),
            manual.criterion.how
        )?;
    }
    writeln!(
        out,
        "  Anota los puntos en un fichero TOML (ejemplo: exercises/manual.example.toml) y pásalo con --manual."
    )?;
    writeln!(out)
}

fn summary(
    out: &mut dyn Write,
    scores: &[ExerciseScore],
    overall: Option<&Overall>,
    paint: Paint,
) -> io::Result<()> {
    writeln!(out, "{}", paint.bold("Resumen"))?;
    for score in scores {
        let line = if score.has_checks() {
            total_line(&score.tally, score.level())
        } else {
            "sin comprobaciones todavía".to_owned()
        };
        writeln!(
            out,
            "  ej{:02} {:<22} {line}",
            score.exercise,
            score::exercise_title(score.exercise)
        )?;
    }
    if let Some(overall) = overall {
        writeln!(
            out,
            "  {} {}",
            paint.bold(&format!("Media de {} ejercicios:", overall.exercises)),
            total_line(&overall.tally, overall.level())
        )?;
    }
    Ok(())
}

/// `--siguiente`: one exercise's progress and the one check to fix next, with its hint.
pub fn next(out: &mut dyn Write, score: &ExerciseScore, paint: Paint) -> io::Result<()> {
    let title = format!(
        "Ejercicio {} · {}",
        score.exercise,
        score::exercise_title(score.exercise)
    );
    if !score.has_checks() {
        return writeln!(
            out,
            "{}: todavía no tiene comprobaciones automáticas",
            paint.bold(&title)
        );
    }
    let passed = score
        .checks()
        .filter(|check| check.status == Status::Passed)
        .count();
    let total = score.checks().count();
    let auto = score.automatic();
    writeln!(
        out,
        "{} · {passed} de {total} comprobaciones pasan · {} de {} puntos automáticos",
        paint.bold(&title),
        points(auto.won),
        points(auto.max())
    )?;
    match score.next_failure() {
        Some(next) => {
            writeln!(
                out,
                "{} {}",
                paint.bad("✘ Siguiente:"),
                paint.bold(&next.check.name())
            )?;
            if let Some(failure) = next.status.failure() {
                writeln!(out, "{}", indent(&failure_text(failure), 2))?;
            }
            writeln!(
                out,
                "{}",
                paint.dim(&format!(
                    "  Vale {} puntos. Todas: cargo test -p exercises --test checks ej{:02}",
                    points(next.value),
                    score.exercise
                ))
            )
        }
        None => {
            writeln!(
                out,
                "{} {} de 100 sin contar la revisión manual ({} puntos más la hace el instructor).",
                paint.ok("✔ Todas las comprobaciones pasan:"),
                points(score.tally.won),
                points(score.tally.pending)
            )?;
            if score.exercise < 5 {
                writeln!(
                    out,
                    "  Sigue con el ejercicio {}: guarda exercises/src/ej{:02}_*.rs",
                    score.exercise + 1,
                    score.exercise + 1
                )?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_have_one_decimal_and_never_a_negative_zero() {
        assert_eq!(points(12.345), "12.3");
        assert_eq!(points(-0.01), "0.0");
        assert_eq!(points(100.0), "100.0");
        assert_eq!(points(2500.0 / 85.0), "29.4");
    }

    #[test]
    fn colours_only_when_asked() {
        assert_eq!(Paint { color: false }.bad("✘"), "✘");
        assert_eq!(Paint { color: true }.bad("✘"), "\x1b[31m✘\x1b[0m");
    }

    #[test]
    fn failures_are_indented_line_by_line() {
        let failure = Failure::new("no llegó")
            .expected("joined")
            .hint("mira la Pista 2");
        let text = indent(&failure_text(&failure), 4);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|line| line.starts_with("    ")));
        assert!(lines[2].contains("siguiente paso:  mira la Pista 2"));
    }
}
