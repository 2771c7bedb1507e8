//! What a run prints: a summary for people, one JSON line for scripts, a Markdown report.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value, json};

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub key: &'static str,
    #[serde(skip)]
    pub label: &'static str,
    #[serde(skip)]
    pub unit: &'static str,
    pub value: f64,
}

/// One scenario against one server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Run {
    /// `chat` or `base`.
    pub target: String,
    /// The sizes it ran with.
    pub params: Map<String, Value>,
    pub metrics: Vec<Metric>,
    /// Anything the figures alone do not say (errors seen, limits hit).
    pub notes: Vec<String>,
}

impl Run {
    pub fn new(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            ..Self::default()
        }
    }

    pub fn param(&mut self, key: &str, value: impl Into<Value>) {
        self.params.insert(key.to_owned(), value.into());
    }

    pub fn metric(
        &mut self,
        key: &'static str,
        label: &'static str,
        unit: &'static str,
        value: f64,
    ) {
        self.metrics.push(Metric {
            key,
            label,
            unit,
            value,
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The value of one metric.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

/// The runs of one scenario (the chat, and the baseline when asked for), side by side.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub scenario: String,
    pub runs: Vec<Run>,
}

fn number(value: f64) -> String {
    if (value.fract() == 0.0 && value.abs() < 1e15) || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

impl Comparison {
    fn chat_and_base(&self) -> (Option<&Run>, Option<&Run>) {
        (
            self.runs.iter().find(|r| r.target == "chat"),
            self.runs.iter().find(|r| r.target == "base"),
        )
    }

    /// chat ÷ baseline for every metric both have (and a non-zero baseline).
    pub fn ratios(&self) -> Vec<(&'static str, f64)> {
        let (Some(chat), Some(base)) = self.chat_and_base() else {
            return Vec::new();
        };
        chat.metrics
            .iter()
            .filter_map(|m| {
                let b = base.get(m.key)?;
                (b != 0.0).then(|| (m.key, m.value / b))
            })
            .collect()
    }

    /// The summary for a terminal (Spanish).
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n== escenario {} ==", self.scenario);
        for run in &self.runs {
            let params: Vec<String> = run.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "-- {} ({})", run.target, params.join(", "));
            for metric in &run.metrics {
                let _ = writeln!(
                    out,
                    "   {:<42} {:>12} {}",
                    metric.label,
                    number(metric.value),
                    metric.unit
                );
            }
            for note in &run.notes {
                let _ = writeln!(out, "   nota: {note}");
            }
        }
        let ratios = self.ratios();
        if !ratios.is_empty() {
            let _ = writeln!(out, "-- chat / base");
            for (key, ratio) in ratios {
                let label = self.label_of(key);
                let _ = writeln!(out, "   {label:<42} {ratio:>12.2} ×");
            }
        }
        out
    }

    fn label_of(&self, key: &str) -> &'static str {
        self.runs
            .iter()
            .flat_map(|r| &r.metrics)
            .find(|m| m.key == key)
            .map(|m| m.label)
            .unwrap_or("")
    }

    /// One line of JSON with everything (for scripts and CI).
    pub fn json_line(&self) -> String {
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|run| {
                let metrics: Map<String, Value> = run
                    .metrics
                    .iter()
                    .map(|m| (m.key.to_owned(), json!(m.value)))
                    .collect();
                json!({ "target": run.target, "params": run.params, "metrics": metrics, "notes": run.notes })
            })
            .collect();
        let ratios: Map<String, Value> = self
            .ratios()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        json!({ "scenario": self.scenario, "runs": runs, "ratios": ratios }).to_string()
    }

    /// A Markdown report: conditions, then one table with a column per server and the ratio.
    pub fn markdown(&self, command: &str, date: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# chat-bench: escenario `{}`\n", self.scenario);
        let _ = writeln!(out, "- Fecha: {date}");
        let _ = writeln!(out, "- Máquina: {}", machine());
        let _ = writeln!(out, "- Orden: `{command}`");
        for run in &self.runs {
            let params: Vec<String> = run.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "- Parámetros ({}): {}", run.target, params.join(", "));
        }
        let _ = writeln!(out);
        let (chat, base) = self.chat_and_base();
        let mut header = String::from("| métrica |");
        let mut rule = String::from("|---|");
        for run in &self.runs {
            let _ = write!(header, " {} |", run.target);
            rule.push_str("---:|");
        }
        if chat.is_some() && base.is_some() {
            header.push_str(" chat / base |");
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        let first = self
            .runs
            .first()
            .map(|r| r.metrics.clone())
            .unwrap_or_default();
        let ratios = self.ratios();
        for metric in first {
            let mut row = format!("| {} ({}) |", metric.label, metric.unit);
            for run in &self.runs {
                let cell = run
                    .get(metric.key)
                    .map(number)
                    .unwrap_or_else(|| "—".into());
                let _ = write!(row, " {cell} |");
            }
            if chat.is_some() && base.is_some() {
                let cell = ratios
                    .iter()
                    .find(|(k, _)| *k == metric.key)
                    .map(|(_, r)| format!("{r:.2} ×"))
                    .unwrap_or_else(|| "—".into());
                let _ = write!(row, " {cell} |");
            }
            let _ = writeln!(out, "{row}");
        }
        for run in &self.runs {
            for note in &run.notes {
                let _ = writeln!(out, "\n> {}: {note}", run.target);
            }
        }
        out
    }
}

/// CPU model and core count, from `/proc/cpuinfo`.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("CPU desconocida");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{model}, {cores} núcleos (generador y servidor en la misma máquina)")
}
