//! Checks of exercise 4 · Notification System: topic subscriptions, live delivery over
//! WebSocket to every open connection of a subscriber, an apalis e-mail job (through a fake
//! `Mailer`) for the ones offline, unread counts and mark-as-read over HTTP.
//!
//! "Did NOT arrive" is proven with sentinels: a later notification that must be the next frame
//! on the same connection, or a later e-mail that must be the next one the fake mailer sees.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::Data;
use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

use super::registry::{Block, Check, Failure};
use super::support::{self, Server, WAIT, WsClient};
use crate::ej04_notifications::{
    self as ej, Email, EmailJob, MailError, Mailer, Notification, Notifier, Published, SharedMailer,
};

const CRIT_TOPICS: &str = "Suscripciones por tema";
const CRIT_LIVE: &str = "Entrega en tiempo real";
const CRIT_UNREAD: &str = "No leídas y marcar como leída";
const CRIT_ERRORS: &str = "Conexiones y errores";
const CRIT_JOBS: &str = "E-mail en segundo plano";

const TIMEOUT: Duration = Duration::from_secs(6);

pub fn checks() -> Vec<Check> {
    let check = |block, criterion, points, title, run| Check {
        exercise: 4,
        block,
        criterion,
        points,
        title,
        timeout: TIMEOUT,
        run,
    };
    vec![
        check(
            Block::Nucleo,
            CRIT_TOPICS,
            3,
            "entrega en tiempo real solo a los suscritos al tema",
            |_| Box::pin(delivers_only_to_topic_subscribers()),
        ),
        check(
            Block::Nucleo,
            CRIT_LIVE,
            2,
            "llega a todas las conexiones abiertas del usuario",
            |_| Box::pin(reaches_every_connection_of_a_user()),
        ),
        check(
            Block::Nucleo,
            CRIT_UNREAD,
            3,
            "cuenta las no leídas y las marca como leídas por HTTP",
            |_| Box::pin(counts_and_marks_unread_over_http()),
        ),
        check(
            Block::Nucleo,
            CRIT_UNREAD,
            2,
            "sincroniza el contador de no leídas por WebSocket (al conectar y al marcar)",
            |_| Box::pin(syncs_unread_count_over_websocket()),
        ),
        check(
            Block::Calidad,
            CRIT_ERRORS,
            3,
            "tras desconectarse, sus notificaciones van por e-mail",
            |_| Box::pin(after_disconnect_goes_by_email()),
        ),
        check(
            Block::Calidad,
            CRIT_ERRORS,
            2,
            "contesta un error a un frame mal formado y sigue atendiendo",
            |_| Box::pin(answers_malformed_frame_and_keeps_serving()),
        ),
        check(
            Block::Calidad,
            CRIT_ERRORS,
            2,
            "rechaza lo inválido: título vacío, notificación ajena o inexistente, usuario no válido",
            |_| Box::pin(rejects_invalid_requests()),
        ),
        check(
            Block::Integracion,
            CRIT_JOBS,
            3,
            "encola un e-mail (apalis) solo para los suscritos desconectados",
            |_| Box::pin(emails_only_offline_subscribers()),
        ),
        check(
            Block::Integracion,
            CRIT_JOBS,
            2,
            "el job de e-mail envía el correo escrito por render_email y propaga el error del Mailer",
            |_| Box::pin(email_job_uses_mailer_and_propagates_errors()),
        ),
        check(
            Block::Integracion,
            CRIT_JOBS,
            2,
            "la transcripción de notificaciones coincide con la de referencia",
            |_| Box::pin(notification_transcript_matches_reference()),
        ),
    ]
}

// ----------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------

/// A `Mailer` that hands every e-mail to the check (or fails, if asked to).
struct FakeMailer {
    sent: mpsc::UnboundedSender<Email>,
    fail: bool,
}

#[async_trait]
impl Mailer for FakeMailer {
    async fn send(&self, email: Email) -> Result<(), MailError> {
        if self.fail {
            return Err(MailError("el servidor SMTP de prueba está caído".into()));
        }
        let _ = self.sent.send(email);
        Ok(())
    }
}

fn fake_mailer(fail: bool) -> (Arc<FakeMailer>, mpsc::UnboundedReceiver<Email>) {
    let (sent, received) = mpsc::unbounded_channel();
    (Arc::new(FakeMailer { sent, fail }), received)
}

struct TestApp {
    notifier: Notifier,
    server: Server,
    http: reqwest::Client,
    emails: mpsc::UnboundedReceiver<Email>,
}

impl TestApp {
    async fn spawn() -> Result<Self, Failure> {
        let (mailer, emails) = fake_mailer(false);
        let notifier = ej::start(mailer);
        let server = support::serve(ej::app(notifier.clone())).await?;
        Ok(Self {
            notifier,
            server,
            http: support::http(),
            emails,
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(reqwest::StatusCode, Value), Failure> {
        let response = request.send().await.map_err(|error| {
            Failure::new(format!("{what} no respondió"))
                .got(error.to_string())
                .hint("¿El handler termina? Un `todo!()` o un pánico cierran la conexión sin respuesta")
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    async fn subscribe(&self, user: &str, topic: &str) -> Result<(), Failure> {
        let path = format!("/users/{user}/subscriptions/{topic}");
        let (status, body) = self
            .send(
                self.http.put(self.server.url(&path)),
                &format!("PUT {path}"),
            )
            .await?;
        if status != reqwest::StatusCode::NO_CONTENT {
            return Err(Failure::new(format!("PUT {path} no suscribió"))
                .expected("204 No Content")
                .got(format!("{status} {body}"))
                .hint(
                    "implementa `Notifier::subscribe`: guarda al usuario en el conjunto del tema",
                ));
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, title: &str, body: &str) -> Result<Published, Failure> {
        let path = format!("/topics/{topic}/notifications");
        let request = self
            .http
            .post(self.server.url(&path))
            .json(&json!({ "title": title, "body": body }));
        let (status, answer) = self.send(request, &format!("POST {path}")).await?;
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(Failure::new(format!("POST {path} no publicó"))
                .expected("202 Accepted con {\"id\", \"online\", \"emailed\"}")
                .got(format!("{status} {answer}"))
                .hint("implementa `Notifier::publish`"));
        }
        serde_json::from_value(answer.clone()).map_err(|_| {
            Failure::new(format!("POST {path} no respondió un Published"))
                .got(answer.to_string())
                .hint("devuelve el `Published` de `publish`")
        })
    }

    async fn unread(&self, user: &str) -> Result<Value, Failure> {
        let path = format!("/users/{user}/unread");
        let (status, body) = self
            .send(
                self.http.get(self.server.url(&path)),
                &format!("GET {path}"),
            )
            .await?;
        if status != reqwest::StatusCode::OK {
            return Err(Failure::new(format!("GET {path} falló"))
                .expected("200 con {\"unread\": N}")
                .got(format!("{status} {body}")));
        }
        Ok(body["unread"].clone())
    }

    async fn inbox(&self, user: &str) -> Result<Vec<Notification>, Failure> {
        let path = format!("/users/{user}/notifications");
        let (status, body) = self
            .send(
                self.http.get(self.server.url(&path)),
                &format!("GET {path}"),
            )
            .await?;
        serde_json::from_value(body.clone()).map_err(|_| {
            Failure::new(format!("GET {path} no devolvió la bandeja"))
                .expected("200 con una lista de Notification")
                .got(format!("{status} {body}"))
                .hint("implementa `Notifier::notifications`")
        })
    }

    async fn mark_read(
        &self,
        user: &str,
        id: u64,
    ) -> Result<(reqwest::StatusCode, Value), Failure> {
        let path = format!("/users/{user}/notifications/{id}/read");
        self.send(
            self.http.post(self.server.url(&path)),
            &format!("POST {path}"),
        )
        .await
    }

    /// Opens `/ws?user=…` and waits for its welcome: from then on the user counts as online.
    async fn connect(&self, user: &str) -> Result<(WsClient, Value), Failure> {
        let mut client =
            WsClient::connect(&self.server.ws_url(&format!("/ws?user={user}"))).await?;
        let welcome = client.recv_json().await.map_err(|failure| {
            failure
                .expected("{\"type\": \"welcome\", \"user\": …, \"unread\": N} nada más conectar")
                .hint("en `handle_socket`, registra la conexión con `notifier.connect` y envía el saludo")
        })?;
        if welcome["type"] != "welcome" || welcome["user"] != user {
            return Err(Failure::new("el primer frame no es el saludo")
                .expected(format!(
                    "{{\"type\":\"welcome\",\"user\":\"{user}\",\"unread\":N}}"
                ))
                .got(welcome.to_string())
                .hint("envía `ServerFrame::Welcome` antes que nada"));
        }
        Ok((client, welcome))
    }

    /// The next e-mail the fake mailer got, within [`WAIT`].
    async fn next_email(&mut self, hint: &str) -> Result<Email, Failure> {
        match tokio::time::timeout(WAIT, self.emails.recv()).await {
            Ok(Some(email)) => Ok(email),
            _ => Err(Failure::new(format!(
                "el Mailer no recibió ningún e-mail en {} s",
                WAIT.as_secs()
            ))
            .hint(hint.to_owned())),
        }
    }

    /// Waits (bounded) until the server has noticed that `user` closed every connection.
    async fn wait_offline(&self, user: &str) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.notifier.is_online(user) {
            if tokio::time::Instant::now() > deadline {
                return Err(Failure::new(format!(
                    "{user} cerró su WebSocket, pero sigue contando como conectado"
                ))
                .hint("al terminar `handle_socket` se suelta la `Connection`: su `Drop` llama a `disconnect`, que debe quitarla de `online[user]` y, si era la última, quitar también al usuario de `online` (es lo que mira `is_online`)"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// The next frame, which must be a notification; returns it parsed.
async fn recv_notification(client: &mut WsClient, who: &str) -> Result<Notification, Failure> {
    let frame = client.recv_json().await.map_err(|failure| {
        failure
            .expected(format!("la notificación en vivo para {who}"))
            .hint("en `publish`, ofrece `ServerFrame::Notification` a la cola de cada conexión del suscrito; en `handle_socket`, reenvía lo que llegue por `connection.frames`")
    })?;
    if frame["type"] != "notification" {
        return Err(Failure::new(format!(
            "{who} recibió otro frame en vez de la notificación"
        ))
        .expected("{\"type\":\"notification\",\"notification\":{…}}")
        .got(frame.to_string()));
    }
    serde_json::from_value(frame["notification"].clone()).map_err(|_| {
        Failure::new("el frame de notificación no trae una Notification")
            .got(frame.to_string())
            .hint("envía `ServerFrame::Notification { notification }` serializado con serde")
    })
}

fn expect_notification(
    got: &Notification,
    id: u64,
    topic: &str,
    title: &str,
) -> Result<(), Failure> {
    if got.id == id && got.topic == topic && got.title == title && !got.read {
        return Ok(());
    }
    Err(Failure::new("la notificación recibida no es la publicada")
        .expected(format!(
            "id {id}, topic «{topic}», title «{title}», read false"
        ))
        .got(format!("{got:?}")))
}

// ----------------------------------------------------------------------------------------------
// Checks
// ----------------------------------------------------------------------------------------------

async fn delivers_only_to_topic_subscribers() -> Result<(), Failure> {
    let app = TestApp::spawn().await?;
    app.subscribe("ana", "deploys").await?;
    app.subscribe("bea", "ventas").await?;
    let (mut ana, _) = app.connect("ana").await?;
    let (mut bea, _) = app.connect("bea").await?;

    let published = app
        .publish("deploys", "Despliegue listo", "v1.2 en producción")
        .await?;
    if published.online != ["ana"] || !published.emailed.is_empty() {
        return Err(
            Failure::new("la publicación en «deploys» no fue solo para ana, en vivo")
                .expected("online [\"ana\"], emailed []")
                .got(format!(
                    "online {:?}, emailed {:?}",
                    published.online, published.emailed
                ))
                .hint("recorre solo los suscritos del tema y mira si cada uno está en `online`"),
        );
    }
    let got = recv_notification(&mut ana, "ana").await?;
    expect_notification(&got, published.id, "deploys", "Despliegue listo")?;

    // Sentinel: the next frame bea sees must be her own topic's, not the one of «deploys».
    let sentinel = app.publish("ventas", "Venta nueva", "pedido 7").await?;
    let got = recv_notification(&mut bea, "bea").await?;
    if got.topic != "ventas" {
        return Err(Failure::new(
            "bea recibió una notificación de un tema al que no está suscrita",
        )
        .expected("solo las de «ventas»")
        .got(format!("{got:?}"))
        .hint(
            "envía a los suscritos del tema (`subscriptions[topic]`), no a todos los conectados",
        ));
    }
    expect_notification(&got, sentinel.id, "ventas", "Venta nueva")
}

async fn reaches_every_connection_of_a_user() -> Result<(), Failure> {
    let app = TestApp::spawn().await?;
    app.subscribe("ana", "deploys").await?;
    let (mut first, _) = app.connect("ana").await?;
    let (mut second, _) = app.connect("ana").await?;
    let published = app.publish("deploys", "Despliegue listo", "v1.2").await?;
    for (tab, client) in [("primera", &mut first), ("segunda", &mut second)] {
        let got = recv_notification(client, &format!("la {tab} pestaña de ana"))
            .await
            .map_err(|failure| {
                failure.hint("guarda TODAS las conexiones de cada usuario (un mapa id → cola), no solo la última")
            })?;
        expect_notification(&got, published.id, "deploys", "Despliegue listo")?;
    }
    Ok(())
}

async fn counts_and_marks_unread_over_http() -> Result<(), Failure> {
    let app = TestApp::spawn().await?;
    app.subscribe("ana", "deploys").await?;
    let first = app.publish("deploys", "Uno", "primero").await?;
    let second = app.publish("deploys", "Dos", "segundo").await?;
    let unread = app.unread("ana").await?;
    if unread != 2 {
        return Err(Failure::new("ana tiene dos notificaciones sin leer y no cuenta 2")
            .expected("{\"unread\": 2}")
            .got(unread.to_string())
            .hint("guarda cada notificación en la bandeja de cada suscrito (conectado o no) y cuenta las `!read`"));
    }
    let inbox = app.inbox("ana").await?;
    let ids: Vec<(u64, bool)> = inbox.iter().map(|n| (n.id, n.read)).collect();
    if ids != [(first.id, false), (second.id, false)] {
        return Err(
            Failure::new("la bandeja de ana no tiene sus dos notificaciones en orden")
                .expected(format!(
                    "[({}, false), ({}, false)] (id, read)",
                    first.id, second.id
                ))
                .got(format!("{ids:?}"))
                .hint("añade al final de la bandeja (`push_back`): de la más vieja a la más nueva"),
        );
    }
    let (status, body) = app.mark_read("ana", first.id).await?;
    if status != reqwest::StatusCode::OK || body["unread"] != 1 {
        return Err(Failure::new("marcar la primera como leída no devolvió el nuevo contador")
            .expected("200 con {\"unread\": 1}")
            .got(format!("{status} {body}"))
            .hint("en `mark_read`, busca la notificación por id en la bandeja del usuario, pon `read = true` y devuelve las no leídas"));
    }
    let inbox = app.inbox("ana").await?;
    let ids: Vec<(u64, bool)> = inbox.iter().map(|n| (n.id, n.read)).collect();
    let unread = app.unread("ana").await?;
    if ids != [(first.id, true), (second.id, false)] || unread != 1 {
        return Err(
            Failure::new("tras marcarla, la bandeja o el contador no cambiaron")
                .expected(format!(
                    "[({}, true), ({}, false)] y unread 1",
                    first.id, second.id
                ))
                .got(format!("{ids:?} y unread {unread}"))
                .hint("cambia la notificación guardada (`iter_mut`), no una copia"),
        );
    }
    Ok(())
}

async fn syncs_unread_count_over_websocket() -> Result<(), Failure> {
    let app = TestApp::spawn().await?;
    app.subscribe("ana", "deploys").await?;
    let first = app.publish("deploys", "Uno", "primero").await?;
    app.publish("deploys", "Dos", "segundo").await?;
    let (mut ana, welcome) = app.connect("ana").await?;
    if welcome["unread"] != 2 {
        return Err(Failure::new("el saludo no trae las no leídas de ana")
            .expected("{\"type\":\"welcome\",\"user\":\"ana\",\"unread\":2}")
            .got(welcome.to_string())
            .hint("rellena `unread` del saludo con `notifier.unread(&user)`"));
    }
    let (status, body) = app.mark_read("ana", first.id).await?;
    if status != reqwest::StatusCode::OK {
        return Err(Failure::new("no se pudo marcar la notificación como leída")
            .got(format!("{status} {body}"))
            .hint("primero haz que pase «cuenta las no leídas y las marca como leídas por HTTP»"));
    }
    let frame = ana.recv_json().await.map_err(|failure| {
        failure
            .expected("{\"type\":\"unread\",\"count\":1} tras marcar por HTTP")
            .hint(
                "en `mark_read`, envía `ServerFrame::Unread { count }` a cada conexión del usuario",
            )
    })?;
    if frame != json!({ "type": "unread", "count": 1 }) {
        return Err(
            Failure::new("tras marcar como leída no llegó el nuevo contador")
                .expected("{\"type\":\"unread\",\"count\":1}")
                .got(frame.to_string()),
        );
    }
    Ok(())
}

async fn after_disconnect_goes_by_email() -> Result<(), Failure> {
    let mut app = TestApp::spawn().await?;
    app.subscribe("ana", "deploys").await?;
    let (mut ana, _) = app.connect("ana").await?;
    if !app.notifier.is_online("ana") {
        return Err(
            Failure::new("ana está conectada y `is_online(\"ana\")` dice que no")
                .hint("`connect` debe guardar la cola de la conexión en `online[user]`"),
        );
    }
    let _ = tokio::time::timeout(WAIT, ana.stream().close(None)).await;
    drop(ana);
    app.wait_offline("ana").await?;
    let published = app.publish("deploys", "Despliegue listo", "v1.2").await?;
    if published.emailed != ["ana"] || !published.online.is_empty() {
        return Err(Failure::new("ana ya se desconectó y la notificación no fue por e-mail")
            .expected("online [], emailed [\"ana\"]")
            .got(format!("online {:?}, emailed {:?}", published.online, published.emailed))
            .hint("decide con `online` en el momento de publicar: sin conexiones, se encola un `EmailJob`"));
    }
    let email = app
        .next_email("encola el `EmailJob` con `queue.push(job).await` y resuelve `send_email`")
        .await?;
    if email.to != "ana@example.com" {
        return Err(Failure::new("el e-mail no fue para ana")
            .expected("to: ana@example.com")
            .got(format!("{email:?}")));
    }
    Ok(())
}

async fn answers_malformed_frame_and_keeps_serving() -> Result<(), Failure> {
    let app = TestApp::spawn().await?;
    let (mut ana, _) = app.connect("ana").await?;
    ana.send_text("hola{").await?;
    let reply = ana.recv_json().await.map_err(|failure| {
        failure
            .expected("{\"type\":\"error\",\"message\":\"…\"} y la conexión abierta")
            .hint("si `serde_json::from_str::<ClientFrame>` falla, contesta `ServerFrame::Error` y sigue en el bucle")
    })?;
    if reply["type"] != "error" || !reply["message"].is_string() {
        return Err(Failure::new("un frame mal formado no recibió un error")
            .expected("{\"type\":\"error\",\"message\":\"…\"}")
            .got(reply.to_string()));
    }
    ana.send_json(&json!({ "type": "ping" })).await?;
    let pong = ana.recv_json().await.map_err(|failure| {
        failure
            .expected("{\"type\":\"pong\"} después del error")
            .hint("no salgas del bucle tras un frame malo; contesta `ClientFrame::Ping` con `ServerFrame::Pong`")
    })?;
    if pong != json!({ "type": "pong" }) {
        return Err(Failure::new("un ping no recibió su pong")
            .expected("{\"type\":\"pong\"}")
            .got(pong.to_string()));
    }
    Ok(())
}

async fn rejects_invalid_requests() -> Result<(), Failure> {
    let app = TestApp::spawn().await?;
    app.subscribe("ana", "deploys").await?;
    let published = app.publish("deploys", "Uno", "primero").await?;

    let request = app
        .http
        .post(app.server.url("/topics/deploys/notifications"))
        .json(&json!({ "title": "   ", "body": "sin título" }));
    let (status, body) = app
        .send(request, "POST /topics/deploys/notifications")
        .await?;
    if status != reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        return Err(
            Failure::new("una notificación con el título en blanco no se rechazó")
                .expected("422 con {\"error\": \"…\"}")
                .got(format!("{status} {body}"))
                .hint(
                    "en `publish`, devuelve `NotifyError::EmptyTitle` si `title.trim()` está vacío",
                ),
        );
    }
    let (status, body) = app.mark_read("bea", published.id).await?;
    if status != reqwest::StatusCode::NOT_FOUND {
        return Err(Failure::new("bea pudo marcar como leída una notificación de ana")
            .expected("404 (para bea esa notificación no existe)")
            .got(format!("{status} {body}"))
            .hint("busca el id solo en la bandeja del usuario de la ruta; si no está, `NotifyError::NotFound`"));
    }
    let (status, body) = app.mark_read("ana", 999).await?;
    if status != reqwest::StatusCode::NOT_FOUND {
        return Err(
            Failure::new("marcar una notificación inexistente no dio 404")
                .expected("404")
                .got(format!("{status} {body}"))
                .hint("devuelve `NotifyError::NotFound(id)` si no la encuentras"),
        );
    }
    if app.unread("ana").await? != 1 {
        return Err(
            Failure::new("las peticiones rechazadas cambiaron las no leídas de ana")
                .expected("{\"unread\": 1}")
                .hint("valida antes de cambiar nada"),
        );
    }
    let url = app.server.ws_url("/ws?user=no%20v%C3%A1lido");
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url.as_str())).await {
        Ok(Err(tungstenite::Error::Http(response)))
            if response.status() == tungstenite::http::StatusCode::UNPROCESSABLE_ENTITY =>
        {
            Ok(())
        }
        Ok(Ok(_)) => Err(
            Failure::new("el WebSocket aceptó un usuario no válido («no válido»)")
                .expected("422 antes del upgrade")
                .hint("`ws` ya valida con `is_valid_name`: no lo quites"),
        ),
        other => Err(
            Failure::new("un usuario no válido no recibió un 422 en /ws")
                .got(format!("{other:?}"))
                .hint("`ws` ya valida con `is_valid_name`: no lo quites"),
        ),
    }
}

async fn emails_only_offline_subscribers() -> Result<(), Failure> {
    let mut app = TestApp::spawn().await?;
    app.subscribe("ana", "deploys").await?;
    app.subscribe("bea", "deploys").await?;
    app.subscribe("zoe", "centinela").await?;
    let (_ana, _) = app.connect("ana").await?;

    let published = app
        .publish("deploys", "Despliegue listo", "v1.2 en producción")
        .await?;
    if published.online != ["ana"] || published.emailed != ["bea"] {
        return Err(Failure::new("la publicación no separó conectados y desconectados")
            .expected("online [\"ana\"], emailed [\"bea\"]")
            .got(format!("online {:?}, emailed {:?}", published.online, published.emailed))
            .hint("a cada suscrito: si está en `online`, a su cola; si no, un `EmailJob` a la cola de apalis"));
    }
    // Sentinel: zoe's e-mail is queued after bea's; every e-mail before it must be bea's only.
    app.publish("centinela", "Centinela", "fin").await?;
    let mut emails = Vec::new();
    loop {
        let email = app
            .next_email("encola un `EmailJob` por desconectado con `queue.push(job).await` y resuelve `send_email`")
            .await
            .map_err(|failure| failure.got(format!("{emails:?}")))?;
        if email.to == "zoe@example.com" {
            break;
        }
        emails.push(email);
    }
    let expected = ej::render_email(&EmailJob {
        user: "bea".into(),
        notification: Notification {
            id: published.id,
            topic: "deploys".into(),
            title: "Despliegue listo".into(),
            body: "v1.2 en producción".into(),
            read: false,
        },
    });
    if emails != [expected.clone()] {
        return Err(Failure::new("los e-mails no son exactamente el de bea")
            .expected(format!("[{expected:?}]"))
            .got(format!("{emails:?}"))
            .hint("ana estaba conectada: a ella no se le encola e-mail; a bea, uno con `render_email`"));
    }
    Ok(())
}

async fn email_job_uses_mailer_and_propagates_errors() -> Result<(), Failure> {
    let job = EmailJob {
        user: "bea".into(),
        notification: Notification {
            id: 7,
            topic: "ventas".into(),
            title: "Venta nueva".into(),
            body: "pedido 1042".into(),
            read: false,
        },
    };
    let (mailer, mut sent) = fake_mailer(false);
    let result = ej::send_email(job.clone(), Data::new(SharedMailer(mailer))).await;
    if let Err(error) = result {
        return Err(
            Failure::new("`send_email` falló con un Mailer que funciona")
                .got(error.to_string())
                .hint("llama a `mailer.send(render_email(&job)).await` y devuelve su resultado"),
        );
    }
    let expected = ej::render_email(&job);
    match sent.try_recv() {
        Ok(email) if email == expected => {}
        other => {
            return Err(
                Failure::new("`send_email` no envió el e-mail de `render_email`")
                    .expected(format!("{expected:?}"))
                    .got(format!("{other:?}"))
                    .hint("envía `render_email(&job)` por el Mailer que llega en `Data`"),
            );
        }
    }
    let (broken, _) = fake_mailer(true);
    if ej::send_email(job, Data::new(SharedMailer(broken)))
        .await
        .is_ok()
    {
        return Err(Failure::new("`send_email` dijo Ok aunque el Mailer falló")
            .expected("Err(MailError): así apalis sabe que el trabajo falló")
            .hint("devuelve el `Result` de `mailer.send(...)`, no lo descartes"));
    }
    Ok(())
}

/// One frame of the reference transcript; if none comes, say which one was due.
async fn transcript_frame(ana: &mut WsClient, what: &str) -> Result<Value, Failure> {
    ana.recv_json().await.map_err(|failure| {
        failure
            .expected(format!("que ana reciba {what}"))
            .hint("la regla que falle por separado (1, 4 o 6) te dice qué le falta a ese frame")
    })
}

async fn notification_transcript_matches_reference() -> Result<(), Failure> {
    let mut app = TestApp::spawn().await?;
    app.subscribe("ana", "deploys").await?;
    app.subscribe("ana", "ventas").await?;
    app.subscribe("bea", "deploys").await?;
    let (mut ana, welcome) = app.connect("ana").await?;
    let mut frames = vec![welcome];
    let mut published = Vec::new();

    let deploy = app
        .publish("deploys", "Despliegue 1.2 listo", "Todo verde")
        .await?;
    published.push(deploy.clone());
    published.push(app.publish("ventas", "Pedido 1042", "3 unidades").await?);
    for topic in ["deploys", "ventas"] {
        let what = format!("la notificación de «{topic}» en vivo");
        frames.push(transcript_frame(&mut ana, &what).await?);
    }
    let email = app
        .next_email("bea está desconectada: encola su `EmailJob` y resuelve `send_email`")
        .await?;
    app.mark_read("ana", deploy.id).await?;
    frames
        .push(transcript_frame(&mut ana, "el contador `unread` tras marcar una como leída").await?);
    ana.send_json(&json!({ "type": "ping" })).await?;
    frames.push(transcript_frame(&mut ana, "el `pong` de su `ping`").await?);
    let inbox = app.inbox("ana").await?;

    let transcript = json!({
        "publicaciones": published,
        "ana por WebSocket": frames,
        "bea por e-mail": [email],
        "bandeja de ana": inbox,
        "no leídas de ana": app.unread("ana").await?,
    });
    support::snapshot(
        "ej04_notification_transcript",
        &transcript,
        "compara frames, e-mails y bandeja con los de la referencia: los tipos ya están hechos, mira el orden y los contadores",
    )
}
