//! Núcleo · authentication: accounts and JWTs, the token before the WebSocket upgrade, the
//! login limit and the admin-only routes.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::client::{PASSWORD, Project, Ws, project, username};
use super::jobs::base64;
use crate::checks::registry::{Env, Failure};
use crate::checks::support::{WAIT, WsClient};

pub const ACCOUNTS: &str = "registra cuentas e inicia sesión con JWT";
pub const WS_TOKEN: &str = "el WebSocket exige un token válido antes del upgrade";
pub const LOGIN_LIMIT: &str = "bloquea el login con 429 tras 5 fallos en un minuto";
pub const ADMIN_ONLY: &str = "las rutas de administración exigen el rol admin";

pub async fn accounts(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let name = username("cuenta");
    let email = format!("{name}@example.com");
    let answer = project.register(&name, &email).await?;
    let role = answer.body["role"].as_str().unwrap_or("");
    if answer.status != 201
        || answer.body["username"] != name.as_str()
        || answer.body["email"] != email.as_str()
        || answer.body["id"].is_null()
        || role != "member"
        || answer.text.contains(PASSWORD)
    {
        return Err(Failure::new("POST /auth/register no devuelve el usuario creado")
            .expected(format!("201 {{\"id\",\"username\":\"{name}\",\"email\":\"{email}\",\"role\":\"member\"}} (sin la contraseña)"))
            .got(answer.describe()));
    }
    project
        .register(&name, &format!("otro-{email}"))
        .await?
        .expect_error("registrar un nombre de usuario repetido", 409, "conflict")?;
    project
        .register(&username("otro"), &email)
        .await?
        .expect_error("registrar un e-mail repetido", 409, "conflict")?;
    for (what, body) in [
        (
            "un nombre con mayúsculas y espacios",
            json!({ "username": "No Vale", "password": PASSWORD, "email": format!("{}@example.com", username("x")) }),
        ),
        (
            "una contraseña de 7 caracteres",
            json!({ "username": username("corta"), "password": "1234567", "email": format!("{}@example.com", username("y")) }),
        ),
        (
            "un e-mail sin @",
            json!({ "username": username("mal"), "password": PASSWORD, "email": "sin-arroba" }),
        ),
    ] {
        project
            .post("/auth/register", None, &body)
            .await?
            .expect_error(&format!("registrar {what}"), 422, "invalid_input")?;
    }
    let login = project.login(&name, PASSWORD).await?;
    let token = login.body["access_token"].as_str().unwrap_or("").to_owned();
    if login.status != 200
        || token.split('.').count() != 3
        || login.body["token_type"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref()
            != Some("bearer")
        || !login.body["expires_in"].is_u64()
    {
        return Err(Failure::new("POST /auth/login no devuelve un JWT")
            .expected(
                "200 {\"access_token\":\"xxx.yyy.zzz\",\"token_type\":\"bearer\",\"expires_in\":N}",
            )
            .got(login.describe()));
    }
    let me = project.get("/auth/me", Some(&token)).await?;
    if me.status != 200 || me.body["username"] != name.as_str() {
        return Err(
            Failure::new("GET /auth/me no devuelve al usuario del token")
                .expected(format!("200 {{\"username\":\"{name}\",…}}"))
                .got(me.describe()),
        );
    }
    let wrong = project.login(&name, "no-es-la-clave").await?;
    wrong.expect_error(
        "iniciar sesión con una contraseña incorrecta",
        401,
        "unauthorized",
    )?;
    let unknown = project.login(&username("nadie"), "no-es-la-clave").await?;
    unknown.expect_error(
        "iniciar sesión con un usuario que no existe",
        401,
        "unauthorized",
    )?;
    if wrong.body != unknown.body {
        return Err(Failure::new(
            "el login responde distinto a un usuario desconocido y a una contraseña mala",
        )
        .expected(wrong.describe())
        .got(unknown.describe())
        .hint(
            "la misma respuesta para los dos casos: así no se puede averiguar qué usuarios existen",
        ));
    }
    project.get("/auth/me", None).await?.expect_error(
        "GET /auth/me sin token",
        401,
        "unauthorized",
    )?;
    Ok(())
}

/// The JSON claims of a JWT (its middle part), without checking anything.
fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&base64(payload)?).ok()
}

fn sign(claims: &Value, secret: &str) -> Result<String, Failure> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|error| Failure::new("no pude firmar un token de prueba").got(error.to_string()))
}

/// Tries to open `/ws`: `Ok(None)` when the upgrade happened, `Ok(Some((status, body)))` when
/// the server refused it.
async fn try_upgrade(
    project: &Project,
    token: Option<&str>,
    header: Option<(&str, String)>,
) -> Result<Option<(u16, Value)>, Failure> {
    let url = match token {
        Some(token) => project.ws_url(token),
        None => project.ws_url("").replace("?token=", ""),
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|error| Failure::new(format!("URL no válida: {url}")).got(error.to_string()))?;
    if let Some((name, value)) = header {
        let value = HeaderValue::from_str(&value)
            .map_err(|error| Failure::new("cabecera no válida").got(error.to_string()))?;
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|error| Failure::new("cabecera no válida").got(error.to_string()))?;
        request.headers_mut().insert(name, value);
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => Err(Failure::new("el upgrade a WebSocket no respondió a tiempo")),
        Ok(Ok((stream, _))) => {
            let mut ws = Ws {
                client: WsClient::from_stream(stream),
            };
            ws.sync().await?;
            ws.close().await;
            Ok(None)
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice(body).ok())
                .unwrap_or(Value::Null);
            Ok(Some((status, body)))
        }
        Ok(Err(error)) => Err(
            Failure::new("el upgrade a WebSocket falló sin una respuesta HTTP")
                .got(error.to_string()),
        ),
    }
}

/// Fails unless opening `/ws` this way is refused with 401 and the JSON error.
async fn expect_refused(project: &Project, what: &str, token: Option<&str>) -> Result<(), Failure> {
    match try_upgrade(project, token, None).await? {
        Some((401, body)) if body["error"]["code"] == "unauthorized" => Ok(()),
        Some((status, body)) => Err(Failure::new(format!(
            "/ws {what}: la negativa no es la del contrato"
        ))
        .expected("401 con {\"error\":{\"code\":\"unauthorized\",…}}, sin upgrade")
        .got(format!("{status} {body}"))),
        None => Err(Failure::new(format!("/ws aceptó la conexión {what}"))
            .expected("401 antes del upgrade")
            .got("101 Switching Protocols")
            .hint("verifica el JWT (firma, algoritmo y caducidad) ANTES de aceptar el upgrade")),
    }
}

pub async fn ws_token(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    expect_refused(&project, "sin token", None).await?;
    expect_refused(
        &project,
        "con un token que no es un JWT",
        Some("no-es-un-token"),
    )
    .await?;
    let mut claims = claims(&ana.token).ok_or_else(|| {
        Failure::new("el access_token no es un JWT legible")
            .got(ana.token.clone())
            .hint("un JWT son tres partes base64url separadas por puntos")
    })?;
    let forged = sign(&claims, "este-no-es-el-secreto-del-servidor")?;
    expect_refused(
        &project,
        "con un token firmado con otro secreto",
        Some(&forged),
    )
    .await?;
    let bearer = Some(("authorization", format!("Bearer {}", ana.token)));
    if let Some((status, body)) = try_upgrade(&project, None, bearer).await? {
        return Err(
            Failure::new("/ws no acepta el token en la cabecera Authorization")
                .expected("101 con Authorization: Bearer <jwt>")
                .got(format!("{status} {body}"))
                .hint("el token puede llegar en ?token= o en Authorization: Bearer"),
        );
    }
    if let Some(secret) = project.target.jwt_secret.clone() {
        let now = chrono::Utc::now().timestamp();
        claims["iat"] = json!(now - 7200);
        claims["exp"] = json!(now + 600);
        let valid = sign(&claims, &secret)?;
        if project.get("/auth/me", Some(&valid)).await?.status != 200 {
            return Err(Failure::new(
                "un token firmado con --jwt-secret no es válido para el servidor",
            )
            .hint("¿es --jwt-secret el JWT_SECRET con el que arrancó el servidor?"));
        }
        claims["exp"] = json!(now - 3600);
        let expired = sign(&claims, &secret)?;
        project
            .get("/auth/me", Some(&expired))
            .await?
            .expect_error("GET /auth/me con un token caducado", 401, "unauthorized")?;
        expect_refused(&project, "con un token caducado", Some(&expired)).await?;
    }
    Ok(())
}

pub async fn login_limit(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    for attempt in 1..=5 {
        let answer = project.login(&ana.name, "no-es-la-clave").await?;
        if answer.status != 401 {
            return Err(
                Failure::new(format!("el fallo de login n.º {attempt} no respondió 401"))
                    .expected("401 en los 5 primeros fallos")
                    .got(answer.describe()),
            );
        }
    }
    let blocked = project.login(&ana.name, PASSWORD).await?;
    blocked.expect_error(
        "el 6.º intento (con la contraseña correcta) tras 5 fallos en un minuto",
        429,
        "rate_limited",
    )?;
    let retry = blocked
        .header("retry-after")
        .and_then(|value| value.trim().parse::<u64>().ok());
    if !retry.is_some_and(|seconds| (1..=60).contains(&seconds)) {
        return Err(Failure::new("el 429 del login no dice cuándo reintentar")
            .expected("Retry-After: segundos enteros entre 1 y 60")
            .got(format!("{:?}", blocked.header("retry-after"))));
    }
    // Unknown usernames count too.
    let ghost = username("fantasma");
    for _ in 1..=5 {
        project.login(&ghost, "no-es-la-clave").await?;
    }
    project
        .login(&ghost, "no-es-la-clave")
        .await?
        .expect_error(
            "el 6.º intento con un usuario que no existe",
            429,
            "rate_limited",
        )?;
    // Another user is not affected.
    let bea = project.user("bea").await?;
    let _ = project.token(&bea.name, PASSWORD).await?;
    Ok(())
}

pub async fn admin_only(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let admin = project.admin_token().await?;
    let me = project.get("/auth/me", Some(&admin)).await?;
    if me.body["role"] != "admin" {
        return Err(Failure::new("la cuenta de --admin-user no tiene el rol admin")
            .expected("GET /auth/me → {\"role\":\"admin\",…}")
            .got(me.describe())
            .hint("la cuenta de administración se crea al arrancar con CHAT_ADMIN_USERNAME / CHAT_ADMIN_PASSWORD"));
    }
    for path in ["/admin/jobs", "/admin/stats", "/dashboard/events"] {
        project.get(path, Some(&ana.token)).await?.expect_error(
            &format!("GET {path} con el token de un miembro"),
            403,
            "forbidden",
        )?;
        project.get(path, None).await?.expect_error(
            &format!("GET {path} sin token"),
            401,
            "unauthorized",
        )?;
    }
    let stats = project.get("/admin/stats", Some(&admin)).await?;
    if stats.status != 200 || !stats.body.is_object() {
        return Err(Failure::new("GET /admin/stats no responde al admin")
            .expected("200 con un objeto JSON")
            .got(stats.describe()));
    }
    Ok(())
}
