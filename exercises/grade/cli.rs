//! The command line, in Spanish: what `grade --help` shows.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The exit codes, as `--help` and the README document them.
pub mod exit {
    /// The level reached is Aprobado or better, whatever is still pending.
    pub const APROBADO: i32 = 0;
    /// Not Aprobado, even if everything pending were won.
    pub const NO_APROBADO: i32 = 1;
    /// Wrong arguments, or a `--manual` file that does not parse or names unknown criteria.
    pub const USO: i32 = 2;
    /// Aprobado or not depends on what is still pending (manual review, unchecked checks).
    pub const PENDIENTE: i32 = 3;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Para leerlo en la terminal.
    #[value(alias = "text")]
    Texto,
    /// Esquema `semana10-grade/1` (ver exercises/README.md), para un LMS.
    Json,
}

/// Corrige los ejercicios de la semana 10 y dice tu nota, nivel y qué arreglar después.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "grade",
    help_template = "{about}\n\nUso: {usage}\n\nOpciones:\n{options}{after-help}",
    disable_help_flag = true,
    after_help = "Códigos de salida: 0 aprobado · 1 no aprobado · 2 error de uso · \
                  3 depende de lo pendiente (revisión manual o comprobaciones no hechas).\n\
                  Ejemplos:\n  \
                  cargo run -p exercises --bin grade -- --ejercicio 1\n  \
                  cargo run -p exercises --bin grade -- --watch\n  \
                  cargo run -p exercises --bin grade -- --project http://localhost:8000 \
                  --admin-user admin --admin-password SECRETO"
)]
pub struct Args {
    /// Corrige solo este ejercicio (1–5; el 6 se corrige por la red con --project).
    #[arg(long, short = 'e', value_name = "N", value_parser = clap::value_parser!(u8).range(1..=6))]
    pub ejercicio: Option<u8>,

    /// Formato del informe.
    #[arg(long, value_enum, default_value_t = Format::Texto)]
    pub format: Format,

    /// Fichero TOML con la revisión manual del instructor (ver exercises/manual.example.toml).
    #[arg(long, value_name = "FICHERO")]
    pub manual: Option<PathBuf>,

    /// Muestra solo la siguiente comprobación que falla y su pista (lo que usa --watch).
    #[arg(long, conflicts_with_all = ["format", "rubric"])]
    pub siguiente: bool,

    /// Vigila exercises/src/ y vuelve a corregir el ejercicio que guardes.
    #[arg(long, conflicts_with_all = ["format", "manual", "siguiente", "rubric", "project"])]
    pub watch: bool,

    /// Imprime la rúbrica en Markdown, generada de las comprobaciones (así se escribe rubric.md).
    #[arg(long, conflicts_with_all = ["ejercicio", "manual", "project"])]
    pub rubric: bool,

    /// Corrige un proyecto final (ejercicio 6) que ya corre en esta URL, por HTTP, WebSocket y SSE.
    #[arg(long, value_name = "URL", requires_all = ["admin_user", "admin_password"])]
    pub project: Option<String>,

    /// Usuario administrador del proyecto (para /admin/...).
    #[arg(long, value_name = "USUARIO", requires = "project")]
    pub admin_user: Option<String>,

    /// Su contraseña (o en la variable GRADE_ADMIN_PASSWORD, fuera del historial de la shell).
    #[arg(
        long,
        value_name = "CONTRASEÑA",
        env = "GRADE_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    pub admin_password: Option<String>,

    /// Carpeta donde el proyecto escribe sus correos `.eml`, si el corrector puede leerla.
    #[arg(long, value_name = "CARPETA", requires = "project")]
    pub outbox: Option<PathBuf>,

    /// El secreto JWT del proyecto, si lo conoces (habilita las comprobaciones de tokens).
    #[arg(long, value_name = "SECRETO", requires = "project")]
    pub jwt_secret: Option<String>,

    /// El comando que arranca el proyecto: así se comprueban el apagado y el reinicio.
    #[arg(long, value_name = "COMANDO", requires = "project")]
    pub command: Option<String>,

    /// Muestra esta ayuda.
    #[arg(short = 'h', long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl Args {
    /// What clap cannot say on its own; `Err` is the message for the user.
    pub fn validate(&self) -> Result<(), String> {
        if self.project.is_none() && self.ejercicio == Some(6) {
            return Err("el ejercicio 6 (el proyecto final) se corrige por la red: \
                        usa --project URL --admin-user U --admin-password P"
                .into());
        }
        if self.project.is_some() && matches!(self.ejercicio, Some(n) if n != 6) {
            return Err("--project corrige el ejercicio 6; quita --ejercicio".into());
        }
        if let Some(url) = &self.project {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--project espera una URL http://HOST:PUERTO, no «{url}»"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("grade").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_grade_every_exercise_as_text() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.ejercicio, None);
        assert_eq!(args.format, Format::Texto);
        assert!(args.validate().is_ok());
    }

    #[test]
    fn exercise_numbers_are_bounded() {
        assert!(parse(&["--ejercicio", "0"]).is_err());
        assert!(parse(&["--ejercicio", "7"]).is_err());
        assert_eq!(parse(&["-e", "3"]).unwrap().ejercicio, Some(3));
        let six = parse(&["--ejercicio", "6"]).unwrap();
        assert!(six.validate().unwrap_err().contains("--project"));
    }

    #[test]
    fn the_project_needs_its_admin_account() {
        assert!(parse(&["--project", "http://localhost:8000"]).is_err());
        assert!(parse(&["--admin-user", "admin"]).is_err());
        let args = parse(&[
            "--project",
            "http://localhost:8000",
            "--admin-user",
            "admin",
            "--admin-password",
            "secreto",
            "--command",
            "cargo run -p chat",
        ])
        .unwrap();
        assert!(args.validate().is_ok());
        assert_eq!(args.command.as_deref(), Some("cargo run -p chat"));
        let bad = parse(&[
            "--project",
            "localhost:8000",
            "--admin-user",
            "a",
            "--admin-password",
            "b",
        ])
        .unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn watch_and_json_do_not_mix() {
        assert!(parse(&["--watch", "--format", "json"]).is_err());
        assert!(parse(&["--watch", "--ejercicio", "2"]).is_ok());
        assert_eq!(parse(&["--format", "json"]).unwrap().format, Format::Json);
        assert_eq!(parse(&["--format", "text"]).unwrap().format, Format::Texto);
    }
}
