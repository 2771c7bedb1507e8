//! Integración · deployment: what needs the server's process. With `command`, each check starts
//! the server itself (`sh -c COMMAND` in its own process group), waits for `/health`, and
//! stops it with SIGTERM; without it they are reported as not checked.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::client::{PASSWORD, Project, id_of, project};
use super::jobs;
use crate::checks::registry::{Env, Failure, ProjectTarget};

pub const SHUTDOWN: &str = "al recibir SIGTERM cierra cada WebSocket con 1001 y termina";
pub const RESTART: &str = "tras reiniciar conserva cuentas, mensajes y trabajos";

/// How long a started server may take to answer `/health`.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long the server may take to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// A server started by the grader with `--command`; dropping it kills its process group.
pub struct ServerProcess {
    child: Child,
    pgid: u32,
    output: Arc<std::sync::Mutex<String>>,
}

impl ServerProcess {
    /// Starts `target.command` and waits until `target.base_url` answers `/health`. Fails if
    /// something already answers there (it would be graded instead of the new process).
    pub async fn start(target: &ProjectTarget) -> Result<Self, Failure> {
        let command = target
            .command
            .clone()
            .ok_or_else(|| Failure::new("falta --command"))?;
        let http = crate::checks::support::http();
        let health = format!("{}/health", target.base_url.trim_end_matches('/'));
        if http.get(&health).send().await.is_ok() {
            return Err(Failure::new(format!(
                "ya hay un servidor respondiendo en {}",
                target.base_url
            ))
            .hint("con --command el corrector arranca y para el servidor él mismo: detén el tuyo antes"));
        }
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                Failure::new(format!("no pude ejecutar --command «{command}»"))
                    .got(error.to_string())
            })?;
        let pgid = child.id().unwrap_or(0);
        let output = Arc::new(std::sync::Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|out| Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|err| Box::new(err) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            tokio::spawn(async move {
                let mut pipe = pipe;
                let mut buffer = [0u8; 4096];
                while let Ok(read) = pipe.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    if let Ok(mut output) = output.lock() {
                        output.push_str(&String::from_utf8_lossy(&buffer[..read]));
                        // Keep only the end: enough to explain a failed start.
                        if output.len() > 8192 {
                            let cut = output.len() - 4096;
                            let cut = (cut..output.len())
                                .find(|i| output.is_char_boundary(*i))
                                .unwrap_or(0);
                            output.drain(..cut);
                        }
                    }
                }
            });
        }
        let mut server = Self {
            child,
            pgid,
            output,
        };
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(
                    Failure::new(format!("el servidor terminó al arrancar ({status})"))
                        .got(server.tail())
                        .hint("prueba --command a mano en una terminal"),
                );
            }
            if let Ok(response) = http.get(&health).send().await {
                if response.status() == 200 {
                    return Ok(server);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                server.kill();
                return Err(Failure::new(format!(
                    "el servidor no respondió a /health en {} s",
                    START_WAIT.as_secs()
                ))
                .got(server.tail())
                .hint("¿escucha --command en la dirección de --project?"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The end of what the server printed.
    pub fn tail(&self) -> String {
        let output = self
            .output
            .lock()
            .map(|output| output.clone())
            .unwrap_or_default();
        let lines: Vec<&str> = output.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn signal(&self, signal: &str) -> bool {
        if self.pgid == 0 {
            return false;
        }
        // `kill -s SIG -- -PGID`: the whole group the check started (the `sh` and the server);
        // without `--`, procps-ng's `kill` would read `-PGID` as an option.
        std::process::Command::new("kill")
            .args(["-s", signal, "--"])
            .arg(format!("-{}", self.pgid))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.child.start_kill();
    }

    /// Sends SIGTERM to the server's process group and waits for it to exit.
    pub async fn stop(mut self) -> Result<(), Failure> {
        if !self.signal("TERM") {
            return Err(Failure::new("no pude enviar SIGTERM al servidor"));
        }
        match tokio::time::timeout(STOP_WAIT, self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                self.kill();
                Err(Failure::new(format!(
                    "el servidor no terminó en {} s tras SIGTERM",
                    STOP_WAIT.as_secs()
                ))
                .hint("al recibir SIGTERM, cierra las conexiones (1001) y termina; no esperes indefinidamente a los clientes"))
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

fn not_checked(what: &str) -> Failure {
    Failure::not_checked(format!(
        "{what} necesita que el corrector arranque el servidor (--command \"…\")"
    ))
}

pub async fn shutdown(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    if project.target.command.is_none() {
        return Err(not_checked("el apagado ordenado"));
    }
    let server = ServerProcess::start(&project.target).await?;
    let ana = project.user("ana").await?;
    let mut a = project.ws(&ana.token).await?;
    a.join("general").await?;
    a.say("general", "hola antes de apagar").await?;
    if !server.signal("TERM") {
        return Err(Failure::new("no pude enviar SIGTERM al servidor"));
    }
    let code = a.closed(STOP_WAIT).await;
    let tail = server.tail();
    let stopped = server.stop_after_signal().await;
    match code {
        Ok(Some(1001)) => {}
        Ok(code) => {
            return Err(Failure::new("al apagarse, el servidor no cerró el WebSocket con 1001")
                .expected("Close 1001 (Going Away) a cada cliente")
                .got(match code {
                    Some(code) => format!("Close {code}"),
                    None => "la conexión se cortó sin frame Close".to_owned(),
                })
                .hint("escucha SIGTERM (tokio::signal), avisa a cada conexión (CancellationToken) y envía Close 1001 antes de salir"));
        }
        Err(failure) => {
            return Err(failure
                .got(format!("lo último que escribió el servidor:\n{tail}"))
                .hint("al recibir SIGTERM, cierra cada WebSocket con 1001"));
        }
    }
    stopped
}

impl ServerProcess {
    async fn stop_after_signal(mut self) -> Result<(), Failure> {
        match tokio::time::timeout(STOP_WAIT, self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                self.kill();
                Err(Failure::new(format!(
                    "el servidor no terminó en {} s tras SIGTERM",
                    STOP_WAIT.as_secs()
                )))
            }
        }
    }
}

async fn history_has(project: &Project, token: &str, room: &str, id: u64) -> Result<bool, Failure> {
    let answer = project
        .get(&format!("/rooms/{room}/messages"), Some(token))
        .await?;
    Ok(answer.body["messages"]
        .as_array()
        .is_some_and(|messages| messages.iter().any(|message| id_of(message) == id)))
}

pub async fn restart(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    if project.target.command.is_none() {
        return Err(not_checked("el reinicio"));
    }
    let server = ServerProcess::start(&project.target).await?;
    let admin = project.admin_token().await?;
    let before = jobs::job_ids(&project, &admin).await?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&bea.token, "reinicio", false).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let message = a
        .say(&room, &format!("antes del reinicio, @{}", bea.name))
        .await?;
    let queued = jobs::new_done_jobs(&project, &admin, &before, 1).await?;
    drop(a);
    server.stop().await?;
    let server = ServerProcess::start(&project.target).await?;
    let login = project.login(&ana.name, PASSWORD).await?;
    if login.status != 200 {
        return Err(Failure::new("tras reiniciar, la cuenta creada antes ya no existe")
            .expected("200 al iniciar sesión con la cuenta de antes")
            .got(login.describe())
            .hint("guarda los datos fuera del proceso (REDIS_URL, una base de datos): ¿arranca --command con REDIS_URL?"));
    }
    let token = login.body["access_token"].as_str().unwrap_or("").to_owned();
    if !history_has(&project, &token, &room, id_of(&message)).await? {
        return Err(
            Failure::new("tras reiniciar, el historial perdió el mensaje de antes").expected(
                format!(
                    "el mensaje {} en GET /rooms/{room}/messages",
                    id_of(&message)
                ),
            ),
        );
    }
    let admin = project.admin_token().await?;
    let after = jobs::job_ids(&project, &admin).await?;
    let lost: Vec<String> = queued
        .iter()
        .map(|job| match &job["id"] {
            serde_json::Value::String(id) => id.clone(),
            other => other.to_string(),
        })
        .filter(|id| !after.contains(id))
        .collect();
    if !lost.is_empty() {
        return Err(
            Failure::new("tras reiniciar, /admin/jobs perdió trabajos de antes")
                .expected("los mismos trabajos (la cola vive en Redis)")
                .got(format!("faltan: {}", lost.join(", "))),
        );
    }
    server.stop().await
}
