//! Núcleo · background tasks: mentions become notifications or e-mail jobs, the e-mail window,
//! and `GET /admin/jobs`. E-mails are read from the outbox when the grader was given it
//! (`--outbox`), otherwise followed through `/admin/jobs`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Project, User, id_of, project, random};
use crate::checks::registry::{Env, Failure};

pub const NOTIFICATION: &str = "una mención a un usuario conectado le llega como notification";
pub const EMAIL: &str =
    "una mención a un usuario desconectado se envía por e-mail en segundo plano";
pub const WINDOW: &str = "como mucho un e-mail por usuario y sala cada 10 minutos";
pub const ADMIN_JOBS: &str = "GET /admin/jobs lista los trabajos con su estado";

/// How long a queued e-mail may take to be sent.
const JOB_WAIT: Duration = Duration::from_secs(10);
/// Pause between two polls of `/admin/jobs` or the outbox.
const POLL: Duration = Duration::from_millis(100);

const STATUSES: [&str; 5] = ["pending", "running", "done", "failed", "dead"];

/// The jobs of `GET /admin/jobs` (all statuses).
pub async fn jobs(project: &Project, admin: &str) -> Result<Vec<Value>, Failure> {
    let answer = project.get("/admin/jobs", Some(admin)).await?;
    match answer.body["jobs"].as_array() {
        Some(jobs) if answer.status == 200 => Ok(jobs.clone()),
        _ => Err(Failure::new("GET /admin/jobs no devuelve la lista de trabajos al admin")
            .expected("200 {\"jobs\":[{\"id\",\"kind\",\"status\",\"attempts\",\"last_error\",\"created_at\",\"updated_at\"}]}")
            .got(answer.describe())
            .hint("los e-mails de menciones son trabajos en segundo plano; /admin/jobs los lista con su estado")),
    }
}

fn job_id(job: &Value) -> String {
    match &job["id"] {
        Value::String(id) => id.clone(),
        other => other.to_string(),
    }
}

pub async fn job_ids(project: &Project, admin: &str) -> Result<HashSet<String>, Failure> {
    Ok(jobs(project, admin).await?.iter().map(job_id).collect())
}

/// Polls `/admin/jobs` until at least `count` jobs not in `before` exist and are `done`.
pub async fn new_done_jobs(
    project: &Project,
    admin: &str,
    before: &HashSet<String>,
    count: usize,
) -> Result<Vec<Value>, Failure> {
    let deadline = tokio::time::Instant::now() + JOB_WAIT;
    loop {
        let fresh: Vec<Value> = jobs(project, admin)
            .await?
            .into_iter()
            .filter(|job| !before.contains(&job_id(job)))
            .collect();
        let done = fresh.iter().filter(|job| job["status"] == "done").count();
        if done >= count && done == fresh.len() {
            return Ok(fresh);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::new(format!(
                "en {} s no aparecieron en /admin/jobs {count} trabajo(s) nuevo(s) terminados (done)",
                JOB_WAIT.as_secs()
            ))
            .expected("un trabajo de e-mail por mención a un usuario sin conexiones, que llega a done")
            .got(format!("trabajos nuevos: {}", Value::Array(fresh)))
            .hint("si el mencionado no tiene conexiones, encola un trabajo de e-mail; el worker lo envía (SMTP o .eml en la bandeja de salida)"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The `.eml` files in the outbox.
fn outbox_files(folder: &Path) -> HashSet<PathBuf> {
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

/// One e-mail: its unfolded, decoded headers and the raw text.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub raw: String,
}

fn parse_email(raw: &str) -> Email {
    let head = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or(raw)
        .split("\n\n")
        .next()
        .unwrap_or(raw);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| decode_words(value))
            .unwrap_or_default()
    };
    Email {
        to: header("to"),
        subject: header("subject"),
        raw: raw.to_owned(),
    }
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) of a header.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        let (before, word) = rest.split_at(start);
        let parts: Vec<&str> = word[2..].splitn(3, '?').collect();
        let end = parts
            .get(2)
            .and_then(|tail| tail.find("?="))
            .filter(|_| parts.len() == 3);
        let Some(end) = end else {
            out.push_str(rest);
            return out;
        };
        if !before.trim().is_empty() {
            out.push_str(before);
        }
        let text = &parts[2][..end];
        let bytes = match parts[1].to_ascii_lowercase().as_str() {
            "b" => base64(text).unwrap_or_default(),
            _ => quoted(text),
        };
        out.push_str(&String::from_utf8_lossy(&bytes));
        let consumed = 2 + parts[0].len() + 1 + parts[1].len() + 1 + end + 2;
        rest = &word[consumed..];
    }
    out.push_str(rest);
    out
}

fn quoted(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'='),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

/// Standard or URL-safe base64, padding optional.
pub fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Polls the outbox until `count` new e-mails to `address` exist (files not in `before`).
async fn new_emails_to(
    folder: &Path,
    before: &HashSet<PathBuf>,
    address: &str,
    count: usize,
) -> Result<Vec<Email>, Failure> {
    let deadline = tokio::time::Instant::now() + JOB_WAIT;
    loop {
        let mut found = Vec::new();
        for path in outbox_files(folder).difference(before) {
            if let Ok(raw) = std::fs::read_to_string(path) {
                let email = parse_email(&raw);
                if email
                    .to
                    .to_ascii_lowercase()
                    .contains(&address.to_ascii_lowercase())
                {
                    found.push(email);
                }
            }
        }
        if found.len() >= count {
            return Ok(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::new(format!(
                "en {} s no apareció en la bandeja de salida ({}) el e-mail para {address}",
                JOB_WAIT.as_secs(),
                folder.display()
            ))
            .expected(format!("{count} fichero(s) .eml nuevo(s) con To: {address}"))
            .got(format!("{} e-mail(s) para esa dirección", found.len()))
            .hint("sin SMTP_URL, el worker escribe cada e-mail como .eml en CHAT_OUTBOX; ¿es la carpeta que pasaste con --outbox?"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `bea` creates a room (so she is a member without ever connecting) and `ana` joins it.
async fn room_with_offline_member(
    project: &Project,
    private: bool,
) -> Result<(User, User, String, super::client::Ws), Failure> {
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&bea.token, "menciones", private).await?;
    if private {
        let answer = project
            .post(
                &format!("/rooms/{room}/members"),
                Some(&bea.token),
                &json!({ "username": ana.name }),
            )
            .await?;
        if answer.status != 201 {
            return Err(Failure::new("no pude invitar a la sala privada").got(answer.describe()));
        }
    }
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    Ok((ana, bea, room, a))
}

pub async fn notification(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&ana.token, "aviso", false).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let mut b = project.ws(&bea.token).await?;
    b.join(&room).await?;
    // Case-insensitive: written in capitals.
    let text = format!("hola @{}, ¿lo ves?", bea.name.to_uppercase());
    let echo = a.say(&room, &text).await?;
    let expected = json!({
        "type": "notification", "kind": "mention", "room": room,
        "message_id": id_of(&echo), "from": ana.name,
    });
    let got = b
        .recv_where(&expected.to_string(), |frame| frame["type"] == "notification")
        .await
        .map_err(|failure| failure.hint("`@usuario` (sin distinguir mayúsculas) notifica a ese miembro en cada una de sus conexiones"))?;
    if got != expected {
        return Err(
            Failure::new("el frame notification no tiene la forma del contrato")
                .expected(expected.to_string())
                .got(got.to_string()),
        );
    }
    // Mentioning oneself notifies nobody; the sentinel proves nothing came.
    a.say(&room, &format!("me cito a mí misma: @{}", ana.name))
        .await?;
    let before = a.sync().await?;
    if let Some(own) = before.iter().find(|frame| frame["type"] == "notification") {
        return Err(
            Failure::new("mencionarse a sí misma generó una notificación")
                .got(own.to_string())
                .hint("una mención nunca notifica a quien escribe"),
        );
    }
    Ok(())
}

pub async fn email(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let admin = project.admin_token().await?;
    let before_jobs = job_ids(&project, &admin).await?;
    let outbox = project.target.outbox.clone();
    let before_files = outbox.as_deref().map(outbox_files).unwrap_or_default();
    let (ana, bea, room, mut a) = room_with_offline_member(&project, true).await?;
    let secret = format!("secreto{}", random());
    a.say(&room, &format!("@{} mira esto: {secret}", bea.name))
        .await?;
    new_done_jobs(&project, &admin, &before_jobs, 1).await?;
    let Some(folder) = outbox else {
        return Ok(());
    };
    let emails = new_emails_to(&folder, &before_files, &bea.email, 1).await?;
    let email = &emails[0];
    if !email.subject.contains(&room) && !email.subject.contains(&format!("Sala {room}"))
        || !email.subject.contains(&ana.name)
    {
        return Err(
            Failure::new("el asunto del e-mail no nombra la sala y a quien mencionó")
                .expected(format!("un Subject con «{room}» y «{}»", ana.name))
                .got(email.subject.clone()),
        );
    }
    if email.raw.contains(&secret) {
        return Err(Failure::new("el e-mail de una sala privada contiene el texto del mensaje")
            .expected("solo quién escribió y dónde")
            .got(format!("el texto «{secret}» aparece en el .eml"))
            .hint("el texto de una sala privada nunca sale de la sala: ni en el trabajo ni en el e-mail"));
    }
    Ok(())
}

pub async fn window(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let admin = project.admin_token().await?;
    let before_jobs = job_ids(&project, &admin).await?;
    let outbox = project.target.outbox.clone();
    let before_files = outbox.as_deref().map(outbox_files).unwrap_or_default();
    let (ana, bea, room, mut a) = room_with_offline_member(&project, false).await?;
    a.say(&room, &format!("primera mención @{}", bea.name))
        .await?;
    new_done_jobs(&project, &admin, &before_jobs, 1).await?;
    a.say(&room, &format!("segunda mención @{}", bea.name))
        .await?;
    // The sentinel: a mention in another room, which must be e-mailed.
    let other = project.room(&bea.token, "otra", false).await?;
    a.join(&other).await?;
    a.say(&other, &format!("en otra sala @{}", bea.name))
        .await?;
    new_done_jobs(&project, &admin, &before_jobs, 2).await?;
    let count = jobs(&project, &admin)
        .await?
        .iter()
        .filter(|job| !before_jobs.contains(&job_id(job)))
        .count();
    if let Some(folder) = outbox {
        let emails = new_emails_to(&folder, &before_files, &bea.email, 2).await?;
        let in_room = emails
            .iter()
            .filter(|email| email.subject.contains(&room) && !email.subject.contains(&other))
            .count();
        if in_room > 1 || emails.len() > 2 {
            return Err(Failure::new("dos menciones seguidas en la misma sala enviaron dos e-mails")
                .expected(format!("un e-mail de «{room}» y otro de «{other}»"))
                .got(emails.iter().map(|email| email.subject.clone()).collect::<Vec<_>>().join(" | "))
                .hint("como mucho un e-mail por (usuario, sala) cada 10 minutos, contados desde que se encola"));
        }
    }
    if count > 2 {
        return Err(Failure::new("dos menciones seguidas en la misma sala encolaron dos e-mails")
            .expected(format!("2 trabajos nuevos (uno por sala) para {}", ana.name))
            .got(format!("{count} trabajos nuevos"))
            .hint("como mucho un e-mail por (usuario, sala) cada 10 minutos, contados desde que se encola"));
    }
    Ok(())
}

pub async fn admin_jobs(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let admin = project.admin_token().await?;
    let before = job_ids(&project, &admin).await?;
    let (_ana, bea, room, mut a) = room_with_offline_member(&project, false).await?;
    a.say(&room, &format!("un trabajo para @{}", bea.name))
        .await?;
    let fresh = new_done_jobs(&project, &admin, &before, 1).await?;
    let job = &fresh[0];
    let well_formed = job["kind"].is_string()
        && STATUSES.contains(&job["status"].as_str().unwrap_or(""))
        && job["attempts"].is_u64()
        && (job["last_error"].is_null() || job["last_error"].is_string())
        && job["created_at"].is_string()
        && job["updated_at"].is_string()
        && !job["id"].is_null();
    if !well_formed {
        return Err(Failure::new("un trabajo de /admin/jobs no tiene los campos del contrato")
            .expected("{\"id\",\"kind\",\"status\",\"attempts\",\"last_error\",\"created_at\",\"updated_at\"}")
            .got(job.to_string()));
    }
    let done = project.get("/admin/jobs?status=done", Some(&admin)).await?;
    let only_done = done.body["jobs"].as_array().is_some_and(|jobs| {
        jobs.iter().all(|job| job["status"] == "done")
            && jobs.iter().any(|listed| job_id(listed) == job_id(job))
    });
    if !only_done {
        return Err(
            Failure::new("GET /admin/jobs?status=done no filtra por estado")
                .expected(format!("solo trabajos done, entre ellos {}", job_id(job)))
                .got(done.describe()),
        );
    }
    project
        .get("/admin/jobs?status=bailando", Some(&admin))
        .await?
        .expect_error("GET /admin/jobs?status=bailando", 422, "invalid_input")?;
    project
        .get("/admin/jobs", Some(&bea.token))
        .await?
        .expect_error(
            "GET /admin/jobs con el token de un miembro",
            403,
            "forbidden",
        )?;
    project.get("/admin/jobs", None).await?.expect_error(
        "GET /admin/jobs sin token",
        401,
        "unauthorized",
    )?;
    Ok(())
}
