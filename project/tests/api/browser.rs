//! End-to-end tests in a real browser: headless Chromium driven through `chromedriver`
//! (WebDriver, with `fantoccini`), against a real server on 127.0.0.1.
//!
//! They need Debian's `chromium` and `chromium-driver` (`sudo apt-get install chromium
//! chromium-driver`). Without them the tests are skipped with a printed reason, unless
//! `REQUIRE_BROWSER=1` (as in CI), which turns the skip into a failure.
//!
//! Each test starts its own `chromedriver` on a free port and one Chromium per user, each with
//! a fresh profile. Browser tests take turns (one at a time in the whole test process), since
//! two Chromiums are already a lot for a 2-core machine. When a test fails, a screenshot of
//! every page is saved to `target/browser-screenshots/<test>-<user>.png`.
//!
//! Conditions are awaited by polling the page (`Page::wait_for`) with a generous timeout; the
//! tests never sleep to let something happen.

use std::future::Future;
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use crate::helpers::*;

/// How long a test waits for something that must happen in a page.
const WAIT: Duration = Duration::from_secs(20);
/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(100);
/// The width of a phone's viewport, in CSS px (an iPhone 12 to 15).
const PHONE_WIDTH: u64 = 390;

/// The Chromium flags of every session (headless, no sandbox for containers, nothing that
/// talks to the network on its own).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
];

// ----------------------------------------------------------------------------------------------
// The tests
// ----------------------------------------------------------------------------------------------

/// Two people register in the web client, meet in a room one of them creates, see each other
/// online and typing, exchange messages, and one disappears from the other's list on logout.
#[tokio::test]
async fn two_browsers_chat_in_a_room_with_typing_and_presence() {
    let Some(mut browsers) = Browsers::start("two_browsers_chat_in_a_room").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let ana = browsers.open("ana", &app.url("")).await;
    let bea = browsers.open("bea", &app.url("")).await;

    browsers
        .run(async {
            two_users_chat(&ana, &bea).await;

            // Presence: bea logs out, ana's list drops her.
            bea.click("#logout").await;
            bea.wait_for(
                "la pantalla de acceso tras cerrar sesión",
                VISIBLE,
                json!(["#auth-view"]),
            )
            .await;
            ana.wait_for(
                "que bea desaparezca de #online-list tras cerrar sesión",
                ABSENT,
                json!(["#online-list li[data-user=\"bea\"]"]),
            )
            .await;
        })
        .await;
}

/// The same conversation across a two-node cluster on Redis: ana's browser talks to node A,
/// bea's to node B. Closing bea's browser removes her from ana's list.
#[tokio::test]
async fn two_browsers_on_two_redis_nodes_chat_and_see_presence() {
    let Some(config) = test_config(Backend::Redis).await else {
        return;
    };
    let Some(mut browsers) = Browsers::start("two_browsers_on_two_redis_nodes").await else {
        return;
    };
    let node_a = spawn_app_with(config.clone()).await;
    let node_b = spawn_app_with(config).await;
    let ana = browsers.open("ana", &node_a.url("")).await;
    let bea = browsers.open("bea", &node_b.url("")).await;

    browsers
        .run(async {
            two_users_chat(&ana, &bea).await;

            // Presence: bea's browser goes away without logging out.
            bea.client.clone().close().await.unwrap();
            ana.wait_for(
                "que bea desaparezca de #online-list al cerrar su navegador",
                ABSENT,
                json!(["#online-list li[data-user=\"bea\"]"]),
            )
            .await;
        })
        .await;
}

/// A Redis emptied under a connected browser: the server bootstraps it again and closes the
/// socket with 1013; the web client rejoins with its `since` and `epoch`, gets `reset`, and
/// replaces what it showed of the room, so a new message whose id starts again from 1 is shown
/// (a client that only sent `since` would ask for ids after the old ones and hide it).
#[tokio::test]
async fn the_web_client_replaces_a_rooms_history_when_redis_comes_back_empty() {
    let Some(redis) = crate::redis_server::private_redis() else {
        return;
    };
    let Some(mut browsers) = Browsers::start("redis_comes_back_empty").await else {
        return;
    };
    let mut config = test_config(Backend::Memory).await.unwrap();
    config.redis_url = Some(redis.url.clone());
    let app = spawn_app_with(config).await;
    let admin = app.admin_token().await;
    let ana = browsers.open("ana", &app.url("")).await;

    browsers
        .run(async {
            // Arrange: ana in general, where three messages were said before Redis is emptied.
            ana.register("ana").await;
            app.post_numbered(&admin, "general", "antes", 3).await;
            ana.wait_for_message("antes 2").await;

            // Act: Redis loses everything; once general is back, a message gets id 1 again.
            let mut raw = redis::Client::open(redis.url.clone())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
            let deadline = Instant::now() + WAIT;
            while !app
                .get("/rooms", Some(&admin))
                .await
                .body
                .as_array()
                .is_some_and(|rooms| rooms.iter().any(|room| room["id"] == "general"))
            {
                assert!(Instant::now() < deadline, "general no volvió en {WAIT:?}");
                tokio::time::sleep(POLL).await;
            }
            let fresh = app.admin_token().await;
            let after = app
                .post_messages(&fresh, "general", &["después del vaciado".to_owned()])
                .await;
            assert_eq!(id_of(&after[0]), 1, "{after:?}");

            // Assert: the new message is shown, and the lost ones are not.
            ana.wait_for_message("después del vaciado").await;
            assert_eq!(ana.message_texts().await, ["después del vaciado"]);
        })
        .await;
}

/// The admin opens the live dashboard; a message sent in the chat moves its message counter,
/// with no reload, and shows up in the activity feed.
#[tokio::test]
async fn dashboard_message_counter_changes_when_a_message_is_sent() {
    let Some(mut browsers) = Browsers::start("dashboard_message_counter").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let mut ana = app.connected("ana").await;
    ana.join("general").await;
    ana.say("general", "antes de abrir el panel").await;
    let admin = browsers.open("admin", &app.url("")).await;

    browsers
        .run(async {
            // Arrange: the admin logs in and the page is live.
            admin.goto("/dashboard").await;
            admin.set("#username", "admin").await;
            admin.set("#password", ADMIN_PASSWORD).await;
            admin.click("#login-form button[type=\"submit\"]").await;
            admin
                .wait_for(
                    "el panel tras entrar",
                    VISIBLE,
                    json!(["#stat-messages-total"]),
                )
                .await;
            admin
                .wait_for(
                    "#connection-status «En directo»",
                    PRESENT,
                    json!(["#connection-status.status-on"]),
                )
                .await;
            let before = admin
                .number_above(
                    "#stat-messages-total",
                    0,
                    "un número en #stat-messages-total",
                )
                .await;

            // Act
            ana.say("general", "hola, panel").await;

            // Assert: the counter goes up by itself, and the feed tells who wrote where.
            admin
                .number_above(
                    "#stat-messages-total",
                    before,
                    &format!("que #stat-messages-total pase de {before} tras enviar un mensaje"),
                )
                .await;
            admin
                .wait_for(
                    "«ana escribió en #general» en #activity-feed",
                    TEXT_HAS,
                    json!(["#activity-feed", "ana escribió en #general"]),
                )
                .await;
        })
        .await;
}

/// The web client highlights exactly the mentions the server notifies (`chat::mentions::parse`),
/// `@@bea` included, and marks a message as mentioning me only when someone else wrote it.
#[tokio::test]
async fn mentions_are_highlighted_with_the_servers_rule() {
    let Some(mut browsers) = Browsers::start("mentions_highlight").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let bea_page = browsers.open("bea", &app.url("")).await;
    let long = "a".repeat(33);
    let texts = [
        "@@bea ¿lo ves?".to_owned(),
        "escribe a bea@example.com o a (@Bea)".to_owned(),
        "@ab es corto, @ sola, fin.@carl_9 y é@dani".to_owned(),
        format!("@{long} no, @{} sí", &long[..32]),
        "@beatriz no es @bea, @bea_2 es otra; @BEA sí".to_owned(),
    ];

    browsers
        .run(async {
            // Arrange: bea in the web client; ana and bea's own second session write.
            bea_page.register("bea").await;
            let ana_token = app.signup("ana").await;
            let mut ana = app.ws(&ana_token).await;
            ana.join("general").await;
            let bea_token = app.token("bea", PASSWORD).await;
            let mut bea = app.ws(&bea_token).await;
            bea.join("general").await;

            // Act
            for text in &texts {
                ana.say("general", text).await;
            }
            bea.say("general", "yo misma: @bea").await;
            bea_page.wait_for_message("yo misma: @bea").await;

            // Assert: per message, the highlighted names are the server's mentions.
            let script =
                "return [...document.querySelectorAll('#message-list li.message[data-id]')]
                .map((li) => ({
                    text: li.querySelector('.text').textContent,
                    names: [...li.querySelectorAll('.mention')].map((s) => s.textContent),
                    me: li.classList.contains('mentions-me'),
                }));";
            let shown = bea_page.js(script, json!([])).await;
            let shown = shown.as_array().unwrap();
            assert_eq!(shown.len(), texts.len() + 1, "{shown:?}");
            for item in shown {
                let text = item["text"].as_str().unwrap();
                // Each name once, in order of appearance, as the server lists them.
                let mut highlighted: Vec<String> = Vec::new();
                for name in item["names"].as_array().unwrap() {
                    let name = name
                        .as_str()
                        .unwrap()
                        .trim_start_matches('@')
                        .to_lowercase();
                    if !highlighted.contains(&name) {
                        highlighted.push(name);
                    }
                }
                assert_eq!(
                    highlighted,
                    chat::mentions::parse(text),
                    "highlighted in {text:?}"
                );
                let mentions_bea = chat::mentions::parse(text).contains(&"bea".to_owned());
                let by_someone_else = !text.starts_with("yo misma");
                assert_eq!(
                    item["me"],
                    json!(mentions_bea && by_someone_else),
                    "mentions-me of {text:?}"
                );
            }
        })
        .await;
}

/// On a phone (390 CSS px) nothing is wider than the screen: not the chat's access screen, nor
/// the chat with a room open and a long message, nor the dashboard's login or its live panel.
#[tokio::test]
async fn the_chat_and_the_dashboard_fit_a_phone_screen() {
    let Some(mut browsers) = Browsers::start("phone_width").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let phone = browsers.open_phone("ana", &app.url("")).await;
    let long = format!(
        "mira https://example.com/{} y dime",
        "una-ruta-muy-larga".repeat(8)
    );

    browsers
        .run(async {
            phone.goto("/").await;
            phone.assert_fits("la pantalla de acceso del chat").await;

            phone.register("ana").await;
            phone.type_keys(&long).await;
            phone.click("#send-button").await;
            phone.wait_for_message(&long).await;
            phone.assert_fits("el chat con una sala abierta").await;

            phone.goto("/dashboard").await;
            phone
                .wait_for("la entrada del panel", VISIBLE, json!(["#login-form"]))
                .await;
            phone.assert_fits("la entrada del panel").await;
            phone.set("#username", "admin").await;
            phone.set("#password", ADMIN_PASSWORD).await;
            phone.click("#login-form button[type=\"submit\"]").await;
            phone
                .wait_for(
                    "la fila de #general en la tabla de salas del panel",
                    TEXT_HAS,
                    json!(["#rooms-body", "#general"]),
                )
                .await;
            phone.assert_fits("el panel en vivo").await;
        })
        .await;
}

/// On a shared computer (a classroom) whoever comes next finds nothing of whoever logged out:
/// the access forms are empty (no username, e-mail or password), and so are the draft, the
/// notices and the lists; the next person registers in the same page, typing into empty fields.
#[tokio::test]
async fn logging_out_leaves_nothing_of_the_previous_user_in_the_page() {
    let Some(mut browsers) = Browsers::start("logout_clears_forms").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let page = browsers.open("aula", &app.url("")).await;

    browsers
        .run(async {
            // Arrange: lucia registers, leaves a draft and has a notice on screen.
            page.register("lucia_aula").await;
            page.type_keys("borrador secreto").await;
            page.set("#new-room-id", "¡no vale!").await;
            page.click("#new-room-form button[type=\"submit\"]").await;
            page.wait_for("un aviso", PRESENT, json!(["#toasts .toast"]))
                .await;

            // Act
            page.click("#logout").await;
            page.wait_for(
                "la pantalla de acceso tras cerrar sesión",
                VISIBLE,
                json!(["#auth-view"]),
            )
            .await;

            // Assert: every field is empty, and no text of lucia's is left in the page.
            let script = "return ['#username', '#password', '#reg-username', '#reg-email',
                    '#reg-password', '#message-input', '#new-room-name', '#new-room-id',
                    '#invite-username']
                .map((s) => [s, document.querySelector(s).value])
                .filter(([, value]) => value !== '');";
            assert_eq!(
                page.js(script, json!([])).await,
                json!([]),
                "campos con valor tras cerrar sesión"
            );
            let left = page
                .js(
                    "return [...document.querySelectorAll('body *')]
                    .filter((e) => !e.children.length && e.textContent.includes(arguments[0]))
                    .map((e) => e.outerHTML);",
                    json!(["lucia"]),
                )
                .await;
            assert_eq!(left, json!([]), "texto de lucia en la página");
            assert_eq!(
                page.js(
                    "return document.querySelector('#toasts').children.length;",
                    json!([])
                )
                .await,
                json!(0),
                "avisos tras cerrar sesión"
            );

            // The next person types into the same (empty) register form.
            page.submit_register("marco_aula").await;
        })
        .await;
}

/// The online list reads like a list: my own name starts at its left edge, like everyone
/// else's. And a notice (toast) never covers the list: not on a wide screen (three columns,
/// the list on the right) nor on a tablet (the list under the rooms).
#[tokio::test]
async fn own_name_lines_up_in_the_online_list_and_toasts_leave_it_visible() {
    let Some(mut browsers) = Browsers::start("online_list_layout").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let page = browsers.open("ana", &app.url("")).await;

    browsers
        .run(async {
            // Arrange: ana in the web client, bea in general through a WebSocket.
            page.register("ana").await;
            let mut bea = app.connected("bea").await;
            bea.join("general").await;
            page.wait_for(
                "que bea aparezca en #online-list",
                PRESENT,
                json!(["#online-list li[data-user=\"bea\"]"]),
            )
            .await;

            // Assert: both names span the list's width, mine too.
            let edges = page
                .js(
                    "const edges = (e) => { const r = e.getBoundingClientRect();
                        return [Math.round(r.left), Math.round(r.right)]; };
                    return [edges(document.querySelector('#online-list')),
                        ...['ana', 'bea'].map((u) =>
                            edges(document.querySelector(`#online-list li[data-user=\"${u}\"]`)))];",
                    json!([]),
                )
                .await;
            let [list, ana, bea] = [&edges[0], &edges[1], &edges[2]];
            assert_eq!(ana, list, "mi nombre (ana) en #online-list: {edges}");
            assert_eq!(bea, list, "el nombre de bea en #online-list: {edges}");

            // Toasts: one on a wide screen, another at tablet width.
            page.toast_leaves_the_online_list_visible("una pantalla ancha")
                .await;
            page.client
                .set_window_size(900, 900)
                .await
                .unwrap_or_else(|e| panic!("no se pudo cambiar el tamaño de la ventana: {e}"));
            let width = page.js("return innerWidth;", json!([])).await;
            assert!(
                width.as_u64().is_some_and(|w| w <= 1000),
                "la ventana de tableta mide {width} px"
            );
            page.toast_leaves_the_online_list_visible("una tableta").await;
        })
        .await;
}

/// The figures the chat shows are written the Spanish way (`Intl.NumberFormat('es-ES')`): a
/// thousands point and a decimal comma, and, when the server goes away, the status says when
/// the next attempt is as «nuevo intento en 0,5 s».
#[tokio::test]
async fn the_status_writes_its_numbers_the_spanish_way() {
    let Some(mut browsers) = Browsers::start("spanish_numbers").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let page = browsers.open("ana", &app.url("")).await;

    browsers
        .run(async {
            page.register("ana").await;
            assert_eq!(
                page.js("return formatNumber(12345.5);", json!([])).await,
                json!("12.345,5"),
                "el formato de las cifras del cliente"
            );

            // Act: the server stops; the client waits a moment before each new attempt.
            app.stop().await;

            // Assert
            let status = page
                .wait_for(
                    "«nuevo intento en … s» en #connection-status",
                    "const e = document.querySelector('#connection-status');
                    return e.dataset.state === 'reconnecting' && e.textContent.includes('nuevo intento en')
                        ? e.textContent : null;",
                    json!([]),
                )
                .await;
            let status = status.as_str().unwrap();
            let seconds = status
                .split("nuevo intento en ")
                .nth(1)
                .and_then(|rest| rest.strip_suffix(" s"))
                .unwrap_or_else(|| panic!("«nuevo intento en X s» al final de {status:?}"));
            let (whole, tenths) = seconds
                .split_once(',')
                .unwrap_or_else(|| panic!("sin coma decimal: {status:?}"));
            assert!(
                !whole.is_empty()
                    && whole.chars().all(|c| c.is_ascii_digit())
                    && tenths.len() == 1
                    && tenths.chars().all(|c| c.is_ascii_digit()),
                "los segundos de {status:?} no son como «0,5»"
            );
        })
        .await;
}

/// Both pages have an icon: `/favicon.ico` is a real ICO (browsers and tools that ask for it
/// get no 404), and the `<link rel="icon">` of the chat and of the dashboard load as images.
#[tokio::test]
async fn the_chat_and_the_dashboard_have_an_icon() {
    let app = spawn_app(Backend::Memory).await.unwrap();
    for (path, content_type, magic) in [
        ("/favicon.ico", "image/x-icon", &b"\0\0\x01\0"[..]),
        ("/favicon.svg", "image/svg+xml", &b"<svg"[..]),
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        assert_eq!(
            response.headers()["content-type"],
            content_type,
            "GET {path}"
        );
        let body = response.bytes().await.unwrap();
        assert!(body.starts_with(magic), "GET {path}: {body:?}");
    }
    let Some(mut browsers) = Browsers::start("favicon").await else {
        return;
    };
    let page = browsers.open("ana", &app.url("")).await;

    browsers
        .run(async {
            for path in ["/", "/dashboard"] {
                page.goto(path).await;
                let icons = page
                    .js(
                        "return Promise.all([...document.querySelectorAll('link[rel~=\"icon\"]')]
                        .map((link) => fetch(link.href).then((r) => ({
                            href: link.href, status: r.status, type: r.headers.get('content-type'),
                        }))));",
                        json!([]),
                    )
                    .await;
                let icons = icons.as_array().unwrap();
                assert!(!icons.is_empty(), "{path} no tiene <link rel=\"icon\">");
                for icon in icons {
                    assert_eq!(icon["status"], 200, "{path}: {icon}");
                    assert!(
                        icon["type"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("image/")),
                        "{path}: {icon}"
                    );
                }
            }
        })
        .await;
}

/// A frame type the client does not know is ignored and the page keeps working, as the contract
/// asks of clients. (The server's `rooms_changed`, which the client does know:
/// `the_room_list_follows_the_servers_rooms_changed`.)
#[tokio::test]
async fn a_frame_of_an_unknown_type_is_ignored_and_the_page_keeps_working() {
    let Some(mut browsers) = Browsers::start("unknown_frame_type").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let page = browsers.open("ana", &app.url("")).await;

    browsers
        .run(async {
            // Arrange
            page.register("ana").await;

            // Act: the frame as the socket's `onmessage` hands it over.
            page.js(
                "handleFrame(JSON.stringify({ type: 'un_tipo_nuevo', room: 'general' }));",
                json!([]),
            )
            .await;

            // Assert: the chat still works.
            page.type_keys("sigo aquí").await;
            page.click("#send-button").await;
            page.wait_for_message("sigo aquí").await;
        })
        .await;
}

/// Removed from the private room on screen, ana's client says so, takes her to #general and
/// drops the room from her list at once (the server's `left`), with no reload and without its
/// 30 s poll (stopped here).
#[tokio::test]
async fn removed_from_the_private_room_on_screen_the_client_moves_to_general() {
    let Some(mut browsers) = Browsers::start("removed_from_private_room").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let page = browsers.open("ana", &app.url("")).await;
    let private = json!(["#room-list [data-room=\"privada\"]"]);

    browsers
        .run(async {
            // Arrange: bea adds ana to her private room; ana (after a reload) has it open.
            page.register("ana").await;
            let bea = app.signup("bea").await;
            let created = app.create_room(&bea, "privada", true).await;
            assert_eq!(created.status, 201, "{created:?}");
            let added = app
                .post(
                    "/rooms/privada/members",
                    Some(&bea),
                    &json!({ "username": "ana" }),
                )
                .await;
            assert_eq!(added.status, 201, "{added:?}");
            page.goto("/").await;
            page.click("#room-list [data-room=\"privada\"]").await;
            page.wait_for(
                "que ana aparezca en línea en la sala privada",
                PRESENT,
                json!(["#online-list li[data-user=\"ana\"]"]),
            )
            .await;
            page.js("clearInterval(state.roomsTimer);", json!([])).await;

            // Act
            let removed = app
                .request(
                    app.http
                        .delete(app.url("/rooms/privada/members/ana"))
                        .bearer_auth(&bea),
                )
                .await;
            assert!(removed.status.is_success(), "{removed:?}");

            // Assert
            page.wait_for(
                "que la sala privada deje #room-list",
                ABSENT,
                private.clone(),
            )
            .await;
            page.wait_for(
                "que #general sea la sala actual",
                PRESENT,
                json!(["#room-list [data-room=\"general\"][aria-current=\"true\"]"]),
            )
            .await;
            page.wait_for(
                "el aviso «Ya no eres miembro de #privada.»",
                TEXT_HAS,
                json!(["#toasts", "Ya no eres miembro de #privada."]),
            )
            .await;
        })
        .await;
}

/// When the rooms someone can see change, their web client lists them at once, with no reload
/// and without its 30 s poll (stopped here): the server's `rooms_changed` frame. A public room
/// created by someone else appears; a private room appears when they are added to it, and goes
/// when they are removed from it.
#[tokio::test]
async fn the_room_list_follows_the_servers_rooms_changed() {
    let Some(mut browsers) = Browsers::start("rooms_changed_push").await else {
        return;
    };
    let app = spawn_app(Backend::Memory).await.unwrap();
    let page = browsers.open("ana", &app.url("")).await;
    let public = json!(["#room-list [data-room=\"publica-nueva\"]"]);
    let private = json!(["#room-list [data-room=\"privada-nueva\"]"]);

    browsers
        .run(async {
            // Arrange: ana in the web client, without its poll; bea through the API.
            page.register("ana").await;
            page.js("clearInterval(state.roomsTimer);", json!([])).await;
            let bea = app.signup("bea").await;

            // A public room, created by bea.
            let created = app.create_room(&bea, "publica-nueva", false).await;
            assert_eq!(created.status, 201, "{created:?}");
            page.wait_for("la sala publica-nueva en #room-list", PRESENT, public)
                .await;

            // A private room of bea's: ana is added to it, then removed.
            let created = app.create_room(&bea, "privada-nueva", true).await;
            assert_eq!(created.status, 201, "{created:?}");
            let added = app
                .post(
                    "/rooms/privada-nueva/members",
                    Some(&bea),
                    &json!({ "username": "ana" }),
                )
                .await;
            assert_eq!(added.status, 201, "{added:?}");
            page.wait_for(
                "la sala privada-nueva en #room-list al añadir a ana",
                PRESENT,
                private.clone(),
            )
            .await;
            let removed = app
                .request(
                    app.http
                        .delete(app.url("/rooms/privada-nueva/members/ana"))
                        .bearer_auth(&bea),
                )
                .await;
            assert!(removed.status.is_success(), "{removed:?}");
            page.wait_for(
                "que privada-nueva deje #room-list al quitar a ana",
                ABSENT,
                private,
            )
            .await;
        })
        .await;
}

/// The shared story of the chat tests: ana registers and creates a room, bea registers and
/// joins it, each sees the other online and typing, and both see both messages.
async fn two_users_chat(ana: &Page, bea: &Page) {
    // Arrange: ana registers and creates a room through the sidebar form.
    ana.register("ana").await;
    ana.fill("#new-room-name", "Equipo E2E").await;
    ana.click("#new-room-form button[type=\"submit\"]").await;
    ana.wait_for(
        "que la sala nueva sea la actual",
        PRESENT,
        json!(["#room-list [data-room=\"equipo-e2e\"][aria-current=\"true\"]"]),
    )
    .await;
    ana.wait_for(
        "que ana aparezca en línea en su sala",
        PRESENT,
        json!(["#online-list li[data-user=\"ana\"]"]),
    )
    .await;

    // bea registers (so the room is already in her list) and clicks the room.
    bea.register("bea").await;
    bea.click("#room-list [data-room=\"equipo-e2e\"]").await;
    bea.wait_for(
        "que la sala equipo-e2e sea la actual",
        PRESENT,
        json!(["#room-list [data-room=\"equipo-e2e\"][aria-current=\"true\"]"]),
    )
    .await;

    // Presence: both see both.
    for page in [ana, bea] {
        for user in ["ana", "bea"] {
            page.wait_for(
                &format!("que {user} aparezca en #online-list"),
                PRESENT,
                json!([format!("#online-list li[data-user=\"{user}\"]")]),
            )
            .await;
        }
    }

    // Typing: while ana types, bea is told so; the message then clears the indicator.
    ana.type_until_seen_typing("hola bea, ¿me lees?", bea, "ana")
        .await;
    ana.click("#send-button").await;
    for page in [ana, bea] {
        page.wait_for_message("hola bea, ¿me lees?").await;
    }
    bea.wait_for(
        "que el mensaje de ana borre «ana está escribiendo…»",
        TEXT_LACKS,
        json!(["#typing-indicator", "ana"]),
    )
    .await;

    // And back: bea types and sends with Enter.
    bea.type_until_seen_typing("¡alto y claro, ana!", ana, "bea")
        .await;
    bea.type_keys(&Key::Enter).await;
    for page in [ana, bea] {
        page.wait_for_message("¡alto y claro, ana!").await;
    }

    // Both messages, confirmed (with their server id), in the same order on both pages.
    let a_texts = ana.message_texts().await;
    assert_eq!(
        a_texts,
        bea.message_texts().await,
        "las dos páginas difieren"
    );
    assert_eq!(
        a_texts,
        ["hola bea, ¿me lees?", "¡alto y claro, ana!"],
        "mensajes de la sala"
    );
}

// ----------------------------------------------------------------------------------------------
// Conditions, as JavaScript run in the page: `arguments` are the JSON values given with them.
// Each returns a truthy value when it holds.
// ----------------------------------------------------------------------------------------------

/// `[selector]`: an element matches.
const PRESENT: &str = "return document.querySelector(arguments[0]) !== null;";
/// `[selector]`: no element matches.
const ABSENT: &str = "return document.querySelector(arguments[0]) === null;";
/// `[selector]`: the element exists and is not hidden.
const VISIBLE: &str =
    "const e = document.querySelector(arguments[0]); return e !== null && !e.closest('[hidden]');";
/// `[selector, text]`: the element's text is exactly `text`.
const TEXT_IS: &str = "const e = document.querySelector(arguments[0]); return e !== null && e.textContent.trim() === arguments[1];";
/// `[selector, text]`: the element's text contains `text`.
const TEXT_HAS: &str = "const e = document.querySelector(arguments[0]); return e !== null && e.textContent.includes(arguments[1]);";
/// `[selector, text]`: the element exists and its text does not contain `text`.
const TEXT_LACKS: &str = "const e = document.querySelector(arguments[0]); return e !== null && !e.textContent.includes(arguments[1]);";
/// `[selector, n]`: `{ "value": v }` once the element shows a whole number `v` above `n`
/// (thousands separators ignored); the placeholder «–» is no number.
const NUMBER_ABOVE: &str = "const e = document.querySelector(arguments[0]);
    const digits = e === null ? '' : e.textContent.replace(/[^0-9]/g, '');
    return digits !== '' && Number(digits) > arguments[1] ? { value: Number(digits) } : null;";
/// `[width]`: `{ scroll, inner, wide }`: how wide the page is and how wide the window, in CSS
/// px, and the elements (at most 5) whose right edge is past `width`.
const FITS: &str = "const scroll = document.scrollingElement.scrollWidth;
    const wide = [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > arguments[0] + 0.5)
        .slice(0, 5)
        .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`);
    return { scroll, inner: innerWidth, wide };";
/// `{ covers, toast, people }` once a notice is shown: whether it overlaps the online list
/// (`.people`), and both boxes as `[left, top, right, bottom]`.
const TOAST_OVER_PEOPLE: &str = "const toast = document.querySelector('#toasts .toast');
    if (toast === null) return null;
    const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    const [a, b] = [box(toast), box(document.querySelector('.people'))];
    const covers = a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
    return { covers, toast: a, people: b };";
/// The texts of the confirmed messages (with a server id) of the current room, in order.
const MESSAGE_TEXTS: &str =
    "return [...document.querySelectorAll('#message-list li.message[data-id]')]
    .map((li) => li.querySelector('.text').textContent);";

// ----------------------------------------------------------------------------------------------
// The harness: chromedriver, sessions, screenshots
// ----------------------------------------------------------------------------------------------

/// One browser test at a time in this process (a `tokio` mutex works across test runtimes).
static TURN: Mutex<()> = Mutex::const_new(());

/// The browsers of one test: its `chromedriver` and the sessions opened through it.
///
/// Dropping it stops `chromedriver` and every Chromium it started, and removes their profiles,
/// even when the test panics.
struct Browsers {
    test: &'static str,
    chromium: PathBuf,
    driver: Driver,
    sessions: Vec<(String, Client)>,
    profiles: Vec<PathBuf>,
    _turn: MutexGuard<'static, ()>,
}

impl Browsers {
    /// Starts `chromedriver` for the test `test`. `None` (after printing why) when Chromium or
    /// chromedriver is not installed; with `REQUIRE_BROWSER=1` that is a failure instead.
    async fn start(test: &'static str) -> Option<Self> {
        let (Some(chromium), Some(chromedriver)) =
            (find_program("chromium"), find_program("chromedriver"))
        else {
            skip::skip(skip::BROWSER);
            return None;
        };
        let turn = TURN.lock().await;
        let driver = Driver::start(&chromedriver).await;
        Some(Self {
            test,
            chromium,
            driver,
            sessions: Vec::new(),
            profiles: Vec::new(),
            _turn: turn,
        })
    }

    /// Opens a new browser (its own Chromium and profile) for the user `name`, on the web
    /// client at `base` (`http://127.0.0.1:PORT`).
    async fn open(&mut self, name: &str, base: &str) -> Page {
        self.open_with(name, base, json!({})).await
    }

    /// Like [`Browsers::open`], on a phone: Chromium's device emulation gives the page a
    /// viewport [`PHONE_WIDTH`] CSS px wide, as a phone does (`width=device-width`).
    async fn open_phone(&mut self, name: &str, base: &str) -> Page {
        let metrics = json!({ "width": PHONE_WIDTH, "height": 844, "pixelRatio": 3.0 });
        let options = json!({ "mobileEmulation": { "deviceMetrics": metrics } });
        self.open_with(name, base, options).await
    }

    /// Opens a browser with these extra `goog:chromeOptions` (a JSON object).
    async fn open_with(&mut self, name: &str, base: &str, options: Value) -> Page {
        let profile =
            std::env::temp_dir().join(format!("chat-browser-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).unwrap();
        self.profiles.push(profile.clone());
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|arg| arg.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut chrome_options = json!({ "binary": self.chromium, "args": args });
        if let (Value::Object(all), Value::Object(extra)) = (&mut chrome_options, options) {
            all.extend(extra);
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": chrome_options,
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.driver.url)
            .await
            .unwrap_or_else(|e| panic!("no se pudo abrir Chromium para {name}: {e}"));
        self.sessions.push((name.to_owned(), client.clone()));
        Page {
            name: name.to_owned(),
            base: base.trim_end_matches('/').to_owned(),
            client,
        }
    }

    /// Runs the test's body. If it panics, saves a screenshot of every page first, then
    /// panics with the same payload. Either way the browsers are closed.
    async fn run(mut self, body: impl Future<Output = ()>) {
        let outcome = AssertUnwindSafe(body).catch_unwind().await;
        if outcome.is_err() {
            self.screenshots().await;
        }
        for (_, client) in self.sessions.drain(..) {
            // A session the test closed itself answers with an error: nothing to do then.
            let _ = client.close().await;
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// Writes `target/browser-screenshots/<test>-<user>.png` for every open page.
    async fn screenshots(&self) {
        let dir = screenshot_dir();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("no se pudo crear {}: {e}", dir.display());
            return;
        }
        for (name, client) in &self.sessions {
            let path = dir.join(format!("{}-{name}.png", self.test));
            match client.screenshot().await {
                Ok(png) => match std::fs::write(&path, png) {
                    Ok(()) => eprintln!("captura de pantalla: {}", path.display()),
                    Err(e) => eprintln!("no se pudo escribir {}: {e}", path.display()),
                },
                Err(e) => eprintln!("sin captura de {name} (¿navegador cerrado?): {e}"),
            }
        }
    }
}

impl Drop for Browsers {
    fn drop(&mut self) {
        // Chromium first (it is in chromedriver's process group), then its profiles.
        self.driver.kill();
        for profile in &self.profiles {
            let _ = std::fs::remove_dir_all(profile);
        }
    }
}

/// `target/browser-screenshots`, next to the test binaries (honours `CARGO_TARGET_DIR`).
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("browser-screenshots")
}

/// The first executable called `name` in the `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs chromedriver (`$0`, with its arguments) in the process group of this `sh`, then waits
/// for its standard input to close and kills the whole group: chromedriver and the Chromiums it
/// launched (killing chromedriver alone leaves them running). The input closes when the
/// `Driver` is dropped or this process ends in any way, even killed, so no browser outlives
/// `cargo test`. If chromedriver exits by itself (its port was taken), the group goes too.
const DRIVER_WRAPPER: &str = r#"("$0" "$@" </dev/null >/dev/null 2>&1; kill -KILL 0) &
read _
kill -KILL 0"#;

/// A `chromedriver` started by a test, under [`DRIVER_WRAPPER`] in its own process group.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it answers `/status`. Tries three
    /// ports, in case one is taken between choosing it and chromedriver binding it.
    async fn start(program: &Path) -> Self {
        let http = reqwest::Client::new();
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(DRIVER_WRAPPER)
                .arg(program)
                .arg(format!("--port={port}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("no se pudo arrancar {}: {e}", program.display()));
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break; // chromedriver exited: its port was taken, try another
                }
                let status = http.get(format!("{url}/status")).send().await;
                if status.is_ok_and(|response| response.status().is_success()) {
                    return Self { child, url };
                }
                tokio::time::sleep(POLL).await;
            }
            let _ = child.start_kill();
        }
        panic!("chromedriver no respondió en {WAIT:?}");
    }

    /// Kills chromedriver's whole process group (chromedriver and the Chromiums it started)
    /// right now, rather than when the wrapper notices its input closed.
    fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        drop(self.child.stdin.take());
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One user's browser, showing the server at `base`. Failures panic with the user's name and
/// what was awaited.
struct Page {
    name: String,
    base: String,
    client: Client,
}

impl Page {
    async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("[{}] no se pudo abrir {url}: {e}", self.name));
    }

    /// Runs `script` in the page with `args` (a JSON array) and returns its result.
    async fn js(&self, script: &str, args: Value) -> Value {
        let Value::Array(args) = args else {
            panic!("los argumentos de un script van en un array JSON")
        };
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("[{}] falló el script {script}: {e}", self.name))
    }

    /// Polls `condition` (see the constants above) until it returns something truthy, and
    /// returns that. Panics after [`WAIT`] saying `what` was awaited.
    async fn wait_for(&self, what: &str, condition: &str, args: Value) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.js(condition, args.clone()).await;
            if truthy(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] pasaron {WAIT:?} esperando {what} (args {args})",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("[{}] no aparece {css}: {e}", self.name))
    }

    /// Clicks `css`. The page re-renders lists (rooms, users) while it lives, so an element
    /// found a moment ago may be replaced before the click lands ("stale element"): then it is
    /// looked up again, until [`WAIT`] runs out.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.find(css).await.click().await {
                Ok(_) => return,
                Err(e) if is_stale(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await
                }
                Err(e) => panic!("[{}] no se pudo pulsar {css}: {e}", self.name),
            }
        }
    }

    /// Types `text` into the field `css` with real key presses (so `input` events fire).
    /// Retries on a stale element like [`Page::click`].
    async fn fill(&self, css: &str, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.find(css).await.send_keys(text).await {
                Ok(()) => return,
                Err(e) if is_stale(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await
                }
                Err(e) => panic!("[{}] no se pudo escribir en {css}: {e}", self.name),
            }
        }
    }

    /// Replaces the value of the field `css` (clears it, then types `text`).
    async fn set(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .clear()
            .await
            .unwrap_or_else(|e| panic!("[{}] no se pudo vaciar {css}: {e}", self.name));
        self.fill(css, text).await;
    }

    /// Waits until the element `css` shows a whole number above `floor` and returns it.
    async fn number_above(&self, css: &str, floor: u64, what: &str) -> u64 {
        let found = self.wait_for(what, NUMBER_ABOVE, json!([css, floor])).await;
        found["value"].as_u64().unwrap()
    }

    /// Fails unless the page is as wide as a phone's screen ([`PHONE_WIDTH`]) and nothing in
    /// it is wider (the page cannot be scrolled sideways). Names what sticks out if something
    /// does.
    async fn assert_fits(&self, what: &str) {
        // A phone widens the window (zooming out) to show a page wider than its screen.
        let size = self.js(FITS, json!([PHONE_WIDTH])).await;
        assert!(
            size["inner"] == json!(PHONE_WIDTH)
                && size["scroll"].as_u64() <= size["inner"].as_u64(),
            "[{}] {what} no cabe en {PHONE_WIDTH} px de ancho: {size}",
            self.name
        );
    }

    /// Makes the client show a notice (a room id it refuses) and fails if the notice covers
    /// the online list, on a screen described by `screen`.
    async fn toast_leaves_the_online_list_visible(&self, screen: &str) {
        self.js(
            "document.querySelector('#toasts').replaceChildren();",
            json!([]),
        )
        .await;
        self.set("#new-room-id", "¡no vale!").await;
        self.click("#new-room-form button[type=\"submit\"]").await;
        let found = self
            .wait_for(
                &format!("un aviso en {screen}"),
                TOAST_OVER_PEOPLE,
                json!([]),
            )
            .await;
        assert_eq!(
            found["covers"],
            json!(false),
            "[{}] el aviso tapa la lista «En línea» en {screen}: {found}",
            self.name
        );
    }

    /// Types into the message box.
    async fn type_keys(&self, keys: &str) {
        self.fill("#message-input", keys).await;
    }

    /// Opens the web client, registers `username` through the register form and waits until
    /// the chat is connected.
    async fn register(&self, username: &str) {
        self.goto("/").await;
        self.submit_register(username).await;
    }

    /// Types `username`, an e-mail and [`PASSWORD`] into the register form shown now (without
    /// reloading the page), submits it and waits until the chat is connected.
    async fn submit_register(&self, username: &str) {
        self.fill("#reg-username", username).await;
        self.fill("#reg-email", &format!("{username}@example.com"))
            .await;
        self.fill("#reg-password", PASSWORD).await;
        self.click("#register-form button[type=\"submit\"]").await;
        self.wait_for(
            "el nombre en #current-user tras registrarse",
            TEXT_IS,
            json!(["#current-user", username]),
        )
        .await;
        self.wait_for(
            "#connection-status conectado",
            PRESENT,
            json!(["#connection-status[data-state=\"open\"]"]),
        )
        .await;
    }

    /// Types `text` into the message box, then keeps the typing going (a space and a
    /// backspace, which leave the text as it was) until `watcher`'s `#typing-indicator`
    /// mentions `typist`. The client sends a `typing` frame at most every 2 s and shows it for
    /// 3 s, so on a slow machine a single check could miss it.
    async fn type_until_seen_typing(&self, text: &str, watcher: &Page, typist: &str) {
        self.type_keys(text).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = watcher
                .js(TEXT_HAS, json!(["#typing-indicator", typist]))
                .await;
            if truthy(&seen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] pasaron {WAIT:?} y #typing-indicator no mencionó a {typist} mientras escribía",
                watcher.name
            );
            self.type_keys(&format!("{}{}", &*Key::Space, &*Key::Backspace))
                .await;
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until a confirmed message (one with a server id) with this text is listed.
    async fn wait_for_message(&self, text: &str) {
        let script =
            "return [...document.querySelectorAll('#message-list li.message[data-id] .text')]
            .some((t) => t.textContent === arguments[0]);";
        self.wait_for(
            &format!("el mensaje «{text}» en #message-list"),
            script,
            json!([text]),
        )
        .await;
    }

    async fn message_texts(&self) -> Vec<String> {
        serde_json::from_value(self.js(MESSAGE_TEXTS, json!([])).await).unwrap()
    }
}

/// Whether WebDriver refused an action because the element left the page.
fn is_stale(error: &fantoccini::error::CmdError) -> bool {
    error.to_string().to_lowercase().contains("stale")
}

/// JavaScript's idea of "true enough" for a condition's result.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
