//! `grade`: runs the checks of the exercises (or of a final project over the network), turns
//! their outcomes into rubric points (`exercises::checks::score`) and tells the student their
//! grade and what to fix next.
//!
//! - `cli`: the arguments and exit codes; `running`: runs the checks with a progress bar;
//! - `text` / `json`: the two reports; `manual`: the instructor's review file;
//! - `watch`: re-grades the exercise whose file is saved; `rubric`: prints `rubric.md`.

mod cli;
mod json;
mod manual;
mod rubric;
mod running;
mod text;
mod watch;

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;

use clap::Parser;
use exercises::checks::registry::ProjectTarget;
use exercises::checks::score::{self, Level, ManualReview};
use exercises::checks::{self, Check, Env, Outcome};

use cli::{Args, Format, exit};
use running::Plan;

fn main() {
    std::process::exit(run_cli());
}

fn run_cli() -> i32 {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { exit::USO } else { 0 };
        }
    };
    if let Err(message) = args.validate() {
        eprintln!("error: {message}");
        return exit::USO;
    }
    if args.rubric {
        let mut stdout = io::stdout().lock();
        return match stdout.write_all(rubric::markdown().as_bytes()) {
            Ok(()) => 0,
            Err(_) => exit::USO,
        };
    }
    if args.watch {
        return watch::run(args.ejercicio);
    }
    let review = match &args.manual {
        Some(path) => match manual::load(path) {
            Ok(review) => review,
            Err(message) => {
                eprintln!("error en --manual: {message}");
                return exit::USO;
            }
        },
        None => ManualReview::new(),
    };
    let terminal = io::stdout().is_terminal();
    let progress = terminal && io::stderr().is_terminal() && args.format == Format::Texto;
    let (selection, env, plan) = select(&args, progress);
    if let Some(url) = &args.project {
        if args.format == Format::Texto {
            println!("Corrigiendo el proyecto final en {url} (ejercicio 6)…\n");
        }
    }
    let results = if args.project.is_some() {
        match run_project(selection, &env, plan, args.format == Format::Texto) {
            Ok(results) => results,
            Err(message) => {
                eprintln!("error: {message}");
                return exit::USO;
            }
        }
    } else {
        running::run_all(selection, &env, plan)
    };
    let options = Options {
        format: args.format,
        next_only: args.siguiente,
        exercise: args.ejercicio,
        project: args.project.clone(),
        paint: text::Paint {
            color: terminal && std::env::var_os("NO_COLOR").is_none(),
        },
    };
    let mut stdout = io::stdout().lock();
    match render(&options, &results, &review, &mut stdout) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error al escribir el informe: {error}");
            exit::USO
        }
    }
}

/// The checks to run, what they run against, and how.
fn select(args: &Args, progress: bool) -> (Vec<Check>, Env, Plan) {
    match &args.project {
        Some(url) => {
            let target = ProjectTarget {
                base_url: url.trim_end_matches('/').to_owned(),
                admin_user: args.admin_user.clone().unwrap_or_default(),
                admin_password: args.admin_password.clone().unwrap_or_default(),
                outbox: args.outbox.clone(),
                jwt_secret: args.jwt_secret.clone(),
                command: args.command.clone(),
            };
            let env = Env {
                project: Some(Arc::new(target)),
            };
            (checks::ej06::checks(), env, Plan::project(progress))
        }
        None => {
            let selection = checks::all()
                .into_iter()
                .filter(|check| args.ejercicio.is_none_or(|n| check.exercise == n))
                .collect();
            (selection, Env::default(), Plan::exercises(progress))
        }
    }
}

/// Runs the checks of exercise 6. With `--command` the grader starts the project itself, runs
/// the network checks against it, stops it, and then runs the checks that start and stop their
/// own server (shutdown, restart), as `checks::ej06` asks.
fn run_project(
    selection: Vec<Check>,
    env: &Env,
    plan: Plan,
    say: bool,
) -> Result<Vec<(Check, Outcome)>, String> {
    let Some(target) = env.project.clone() else {
        return Ok(running::run_all(selection, env, plan));
    };
    let Some(command) = target.command.clone() else {
        return Ok(running::run_all(selection, env, plan));
    };
    type Numbered = Vec<(usize, Check)>;
    let (process, network): (Numbered, Numbered) = selection
        .into_iter()
        .enumerate()
        .partition(|(_, check)| checks::ej06::needs_process(check));
    // A runtime of its own keeps reading the server's output while the checks run elsewhere.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|error| format!("no pude crear el runtime: {error}"))?;
    if say {
        println!("Arrancando el proyecto con --command «{command}»…");
    }
    let server = runtime
        .block_on(checks::ej06::process::ServerProcess::start(&target))
        .map_err(|failure| format!("no pude arrancar el proyecto con --command:\n{failure}"))?;
    let (order, network): (Vec<usize>, Vec<Check>) = network.into_iter().unzip();
    let mut results: Vec<(usize, (Check, Outcome))> = order
        .into_iter()
        .zip(running::run_all(network, env, plan))
        .collect();
    if let Err(failure) = runtime.block_on(server.stop()) {
        eprintln!("aviso: al parar el proyecto: {failure}");
    }
    let (order, process): (Vec<usize>, Vec<Check>) = process.into_iter().unzip();
    results.extend(order.into_iter().zip(running::run_all(process, env, plan)));
    results.sort_by_key(|(order, _)| *order);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}

/// What to print, once the checks have run.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    pub next_only: bool,
    pub exercise: Option<u8>,
    pub project: Option<String>,
    pub paint: text::Paint,
}

/// Scores the outcomes, writes the report and returns the exit code.
pub fn render(
    options: &Options,
    results: &[(Check, Outcome)],
    review: &ManualReview,
    out: &mut dyn Write,
) -> io::Result<i32> {
    let mut scores = score::score_all(results, review);
    // An exercise asked for by number is reported even when it has no checks yet.
    let asked = options.exercise.or(options.project.as_ref().map(|_| 6));
    if let Some(asked) = asked {
        if scores.is_empty() {
            scores.push(score::score_exercise(asked, results, review));
        }
    } else if options.project.is_none() {
        for exercise in 1..=5 {
            if !scores.iter().any(|score| score.exercise == exercise) {
                scores.push(score::score_exercise(exercise, results, review));
            }
        }
        scores.sort_by_key(|score| score.exercise);
    }

    if options.next_only {
        let shown = scores
            .iter()
            .find(|score| score.next_failure().is_some())
            .or(scores.last());
        return match shown {
            Some(score) => {
                text::next(out, score, options.paint)?;
                Ok(exit_code(score.has_checks(), score.level()))
            }
            None => Ok(exit::NO_APROBADO),
        };
    }

    let overall = score::overall(&scores);
    let code = match &overall {
        Some(overall) => exit_code(true, overall.level()),
        None => exit::NO_APROBADO,
    };
    match options.format {
        Format::Texto => text::report(out, &scores, overall.as_ref(), options.paint)?,
        Format::Json => {
            let mode = if options.project.is_some() {
                "project"
            } else {
                "exercises"
            };
            let report = json::report(
                mode,
                options.project.clone(),
                &scores,
                overall.as_ref(),
                code,
            );
            serde_json::to_writer_pretty(&mut *out, &report).map_err(io::Error::other)?;
            writeln!(out)?;
        }
    }
    Ok(code)
}

fn exit_code(scored: bool, level: score::LevelRange) -> i32 {
    if !scored || level.max < Level::Aprobado {
        exit::NO_APROBADO
    } else if level.min >= Level::Aprobado {
        exit::APROBADO
    } else {
        exit::PENDIENTE
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use exercises::checks::{Block, CheckFuture, Failure};

    use super::*;

    fn check(
        exercise: u8,
        block: Block,
        criterion: &'static str,
        title: &'static str,
        run: fn(Env) -> CheckFuture,
    ) -> Check {
        Check {
            exercise,
            block,
            criterion,
            points: 1,
            title,
            timeout: Duration::from_secs(2),
            run,
        }
    }

    fn ok(_: Env) -> CheckFuture {
        Box::pin(async { Ok(()) })
    }

    fn broken(_: Env) -> CheckFuture {
        Box::pin(async {
            Err(Failure::new("no llegó el aviso de entrada")
                .expected("{\"type\":\"joined\"}")
                .got("nada en 3 s")
                .hint("¿Difundes el aviso al unirte? Mira la Pista 2."))
        })
    }

    fn unchecked(_: Env) -> CheckFuture {
        Box::pin(async { Err(score::not_checked("hace falta --command para reiniciarlo")) })
    }

    fn uses_the_project(env: Env) -> CheckFuture {
        Box::pin(async move {
            match env.project {
                Some(target) if target.base_url == "http://127.0.0.1:9" => Ok(()),
                other => Err(Failure::new(format!("sin proyecto: {other:?}"))),
            }
        })
    }

    /// Exercise 1 with one failing núcleo check, exercise 2 all passing.
    fn class() -> Vec<Check> {
        vec![
            check(1, Block::Nucleo, "Chat por salas", "difunde en la sala", ok),
            check(1, Block::Nucleo, "Avisos", "avisa al entrar", broken),
            check(1, Block::Calidad, "Errores", "sobrevive a basura", ok),
            check(1, Block::Integracion, "Pruebas", "se prueba sin red", ok),
            check(2, Block::Nucleo, "Cola", "encola y responde 202", ok),
            check(2, Block::Calidad, "Reintentos", "reintenta con espera", ok),
            check(2, Block::Integracion, "Jobs", "usa apalis", ok),
        ]
    }

    fn options(format: Format) -> Options {
        Options {
            format,
            next_only: false,
            exercise: None,
            project: None,
            paint: text::Paint { color: false },
        }
    }

    fn run(checks: Vec<Check>, options: &Options, review: &ManualReview) -> (String, i32) {
        let results = running::run_all(checks, &Env::default(), Plan::exercises(false));
        let mut out = Vec::new();
        let code = render(options, &results, review, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), code)
    }

    #[test]
    fn the_text_report_says_what_was_lost_and_why() {
        let (out, code) = run(class(), &options(Format::Texto), &ManualReview::new());
        assert!(out.contains("Ejercicio 1 · WebSocket Chat"), "{out}");
        assert!(
            out.contains("Funcionalidades core (núcleo) · 30.0 de 60.0"),
            "{out}"
        );
        assert!(
            out.contains("✘ ej01 · núcleo · avisa al entrar (−30.0)"),
            "{out}"
        );
        assert!(out.contains("no llegó el aviso de entrada"), "{out}");
        assert!(out.contains("siguiente paso:  ¿Difundes el aviso"), "{out}");
        assert!(out.contains("Total: 65.0 de 100.0 (+5.0 pendientes de revisión manual) → entre No aprobado y Aprobado"), "{out}");
        assert!(
            out.contains("Siguiente paso: arregla «ej01 · núcleo · avisa al entrar»"),
            "{out}"
        );
        assert!(out.contains("Pendiente de revisión manual"), "{out}");
        assert!(
            out.contains(
                "Clean code y documentación («codigo», calidad) en ej01 (5.0), ej02 (5.0): Lee"
            ),
            "{out}"
        );
        // Exercises 3–5 have no checks here: said, not graded as zero.
        assert!(
            out.contains("Ejercicio 3 · Dashboard Live\n  todavía no tiene comprobaciones"),
            "{out}"
        );
        assert!(out.contains("Media de 2 ejercicios: 80.0 de 100.0 (+5.0 pendientes de revisión manual) → entre Aprobado y Bueno"), "{out}");
        assert!(!out.contains('\x1b'), "plain output has no colours");
        assert_eq!(code, exit::APROBADO);
    }

    #[test]
    fn the_exit_code_follows_the_level_and_what_is_pending() {
        let first = Options {
            exercise: Some(1),
            ..options(Format::Texto)
        };
        let only_one: Vec<Check> = class().into_iter().filter(|c| c.exercise == 1).collect();
        // 65 won, 5 pending: the review decides whether it reaches 70.
        let (out, code) = run(only_one.clone(), &first, &ManualReview::new());
        assert_eq!(code, exit::PENDIENTE, "{out}");
        // With the review recorded below 5 points, it cannot.
        let mut review = ManualReview::new();
        review.record(1, "codigo", 4.0, None).unwrap();
        let (_, code) = run(only_one.clone(), &first, &review);
        assert_eq!(code, exit::NO_APROBADO);
        // Passing núcleo, losing the calidad check: 75 won → Aprobado for sure.
        let mut fixed = only_one.clone();
        fixed[1].run = ok;
        fixed[2].run = broken;
        let (_, code) = run(fixed, &first, &ManualReview::new());
        assert_eq!(code, exit::APROBADO);
        // Losing all of núcleo: 35 + 5 → No aprobado whatever the review says.
        let mut worse = only_one;
        worse[0].run = broken;
        let (_, code) = run(worse, &first, &ManualReview::new());
        assert_eq!(code, exit::NO_APROBADO);
        // A range that straddles 70 exits with 3.
        assert_eq!(
            exit_code(true, score::LevelRange::of(67.0, 72.0)),
            exit::PENDIENTE
        );
        assert_eq!(
            exit_code(false, score::LevelRange::of(100.0, 100.0)),
            exit::NO_APROBADO
        );
    }

    #[test]
    fn the_json_report_follows_its_schema() {
        let mut review = ManualReview::new();
        review
            .record(2, "codigo", 4.0, Some("claro".into()))
            .unwrap();
        let (out, code) = run(class(), &options(Format::Json), &review);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["schema"], "semana10-grade/1");
        assert_eq!(json["mode"], "exercises");
        assert_eq!(json["exit_code"], code);
        assert_eq!(json["passed"], code == 0);
        let exercises = json["exercises"].as_array().unwrap();
        assert_eq!(exercises.len(), 5);
        let first = &exercises[0];
        assert_eq!(first["exercise"], 1);
        assert_eq!(first["scored"], true);
        assert_eq!(first["points"]["won"], 65.0);
        assert_eq!(first["points"]["pending"], 5.0);
        assert_eq!(first["points"]["max"], 100.0);
        assert_eq!(first["level"]["min"], "no_aprobado");
        assert_eq!(first["level"]["max"], "aprobado");
        assert!(first["level"]["decided"].is_null());
        assert_eq!(first["next"], "ej01 · núcleo · avisa al entrar");
        assert_eq!(first["blocks"][0]["block"], "nucleo");
        assert_eq!(first["blocks"][0]["weight"], 60.0);
        let avisos = &first["criteria"][1];
        assert_eq!(avisos["criterion"], "Avisos");
        assert_eq!(avisos["checks"][0]["status"], "failed");
        assert_eq!(avisos["checks"][0]["value"], 30.0);
        assert_eq!(
            avisos["checks"][0]["failure"]["hint"],
            "¿Difundes el aviso al unirte? Mira la Pista 2."
        );
        let second = &exercises[1];
        assert_eq!(second["points"]["won"], 99.0);
        assert_eq!(second["level"]["decided"], "excelente");
        let manual = second["criteria"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|c| c["manual"].as_object().cloned())
            .unwrap();
        assert_eq!(manual["id"], "codigo");
        assert_eq!(manual["recorded"], true);
        assert_eq!(manual["mark"], 4.0);
        assert_eq!(manual["comment"], "claro");
        assert_eq!(exercises[2]["scored"], false);
        assert_eq!(json["overall"]["exercises"], 2);
    }

    #[test]
    fn siguiente_shows_only_the_next_failing_check_and_its_hint() {
        let next = Options {
            next_only: true,
            ..options(Format::Texto)
        };
        let (out, _) = run(class(), &next, &ManualReview::new());
        assert!(
            out.starts_with("Ejercicio 1 · WebSocket Chat · 3 de 4 comprobaciones pasan"),
            "{out}"
        );
        assert!(
            out.contains("✘ Siguiente: ej01 · núcleo · avisa al entrar"),
            "{out}"
        );
        assert!(
            out.contains("¿Difundes el aviso al unirte? Mira la Pista 2."),
            "{out}"
        );
        assert!(!out.contains("Ejercicio 2"), "{out}");

        let second = Options {
            exercise: Some(2),
            ..next
        };
        let only_two: Vec<Check> = class().into_iter().filter(|c| c.exercise == 2).collect();
        let (out, code) = run(only_two, &second, &ManualReview::new());
        assert!(
            out.contains("✔ Todas las comprobaciones pasan: 95.0 de 100"),
            "{out}"
        );
        assert!(out.contains("Sigue con el ejercicio 3"), "{out}");
        assert_eq!(code, exit::APROBADO);
    }

    #[test]
    fn a_project_is_graded_with_its_target_and_unchecked_points_are_said() {
        let checks = vec![
            check(
                6,
                Block::Nucleo,
                "Chat",
                "entrega en la sala",
                uses_the_project,
            ),
            check(
                6,
                Block::Calidad,
                "Recuperación",
                "se reinicia sin perder nada",
                unchecked,
            ),
            check(6, Block::Integracion, "Autenticación", "pide token", ok),
        ];
        let target = ProjectTarget {
            base_url: "http://127.0.0.1:9".into(),
            ..ProjectTarget::default()
        };
        let env = Env {
            project: Some(Arc::new(target)),
        };
        let results = running::run_all(checks, &env, Plan::project(false));
        let project = Options {
            project: Some("http://127.0.0.1:9".into()),
            ..options(Format::Texto)
        };
        let mut out = Vec::new();
        let code = render(&project, &results, &ManualReview::new(), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("Ejercicio 6 · Proyecto integrador"), "{out}");
        assert!(
            out.contains("… ej06 · calidad · se reinicia sin perder nada (20.0 no comprobados)"),
            "{out}"
        );
        assert!(out.contains("no comprobado: hace falta --command"), "{out}");
        assert!(
            out.contains("Parte automática: 68.0 de 68.0 (100 %)"),
            "{out}"
        );
        assert!(!out.contains("Ejercicio 1"), "{out}");
        // 68 won, up to 100: the review and the restart decide.
        assert_eq!(code, exit::PENDIENTE);
        let scores = score::score_all(&results, &ManualReview::new());
        assert_eq!(scores[0].automatic_level(), Some(Level::Excelente));
    }

    /// Answers when the server started by `--command` is up.
    fn server_is_up(env: Env) -> CheckFuture {
        Box::pin(async move {
            let target = env.project.ok_or_else(|| Failure::new("sin proyecto"))?;
            let url = format!("{}/health", target.base_url);
            match reqwest::get(&url).await {
                Ok(response) if response.status() == 200 => Ok(()),
                other => Err(Failure::new(format!("no responde: {other:?}"))),
            }
        })
    }

    /// A process check runs after the grader stopped its server: nothing answers any more.
    fn server_was_stopped(env: Env) -> CheckFuture {
        Box::pin(async move {
            let target = env.project.ok_or_else(|| Failure::new("sin proyecto"))?;
            match reqwest::get(format!("{}/health", target.base_url)).await {
                Err(error) if error.is_connect() => Ok(()),
                other => Err(Failure::new(format!("aún responde: {other:?}"))),
            }
        })
    }

    #[test]
    fn with_a_command_the_grader_starts_checks_and_stops_the_project_in_order() {
        if std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_err()
        {
            // Written straight to stderr: libtest would hide a println! of a passing test.
            let _ = writeln!(
                io::stderr(),
                "omitida: hace falta python3 para servir un /health de prueba"
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("grade-command-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("health"), "ok").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let target = ProjectTarget {
            base_url: format!("http://127.0.0.1:{port}"),
            command: Some(format!(
                "cd {} && exec python3 -m http.server {port} --bind 127.0.0.1",
                dir.display()
            )),
            ..ProjectTarget::default()
        };
        let env = Env {
            project: Some(Arc::new(target)),
        };
        let deployment = checks::ej06::DEPLOYMENT;
        let selection = vec![
            check(
                6,
                Block::Integracion,
                deployment,
                "se apaga",
                server_was_stopped,
            ),
            check(6, Block::Nucleo, "Chat", "responde", server_is_up),
            check(
                6,
                Block::Calidad,
                "Errores",
                "responde otra vez",
                server_is_up,
            ),
        ];
        let results = run_project(selection, &env, Plan::project(false), false).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let titles: Vec<&str> = results.iter().map(|(check, _)| check.title).collect();
        assert_eq!(titles, ["se apaga", "responde", "responde otra vez"]);
        for (check, outcome) in &results {
            assert!(outcome.passed(), "{}: {:?}", check.title, outcome.result);
        }
    }

    #[test]
    fn a_command_that_does_not_start_is_an_error_not_a_grade() {
        let target = ProjectTarget {
            base_url: "http://127.0.0.1:9".into(),
            command: Some("exit 3".into()),
            ..ProjectTarget::default()
        };
        let env = Env {
            project: Some(Arc::new(target)),
        };
        let selection = vec![check(6, Block::Nucleo, "Chat", "responde", server_is_up)];
        let error = run_project(selection, &env, Plan::project(false), false).unwrap_err();
        assert!(error.contains("no pude arrancar el proyecto"), "{error}");
    }
}
