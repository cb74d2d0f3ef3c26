//! Buttons, lists, templates, and native-flow interactive messages (single and carousel).
//!
//! Legacy buttons, lists and templates travel inside a `viewOnceMessage`, as the clients that
//! still send them do; buttons and lists also carry a `<biz>` stanza node. Interactive
//! messages go unwrapped: whatsapp-rust adds their `<biz>` node itself (it only looks at
//! the top level).

use std::collections::HashSet;

use axum::{Json, extract::State};
use whatsapp_rust::waproto::whatsapp as wa;

use super::{quote, recipient, required, sent};
use crate::{
    app::AppState,
    engine::{
        EngineError, State as Live,
        rich::{HeaderMedia, biz_node},
    },
    error::{ApiError, ApiResult},
    http::{
        dto::{
            CarouselCardHeader, NativeFlowButton, Quoted, SendButtonsRequest, SendCarouselRequest,
            SendInteractiveRequest, SendListRequest, SendResponse, SendTemplateRequest,
            TemplateButton,
        },
        extract::{JsonBody, SessionCtx},
    },
    media::{Fetcher, MediaKind, input},
    store::SessionRecord,
};

const MAX_BUTTONS: usize = 3;
const MAX_CARDS: usize = 10;

/// `Some(text)` unless blank.
fn text(value: &Option<String>) -> Option<String> {
    value.as_ref().filter(|v| !v.trim().is_empty()).cloned()
}

/// A header file named in a request: the field (for errors), its kind and value.
struct HeaderFile<'a> {
    field: String,
    kind: MediaKind,
    value: &'a str,
}

/// The one header file among `candidates` (field, kind, value); two is a 400 naming them.
fn header_file<'a>(
    prefix: &str,
    candidates: &[(&str, MediaKind, &'a Option<String>)],
) -> Result<Option<HeaderFile<'a>>, ApiError> {
    let given: Vec<_> = candidates
        .iter()
        .filter_map(|(f, k, v)| {
            let v = v.as_deref().filter(|v| !v.trim().is_empty())?;
            Some(HeaderFile {
                field: format!("{prefix}{f}"),
                kind: *k,
                value: v,
            })
        })
        .collect();
    if given.len() > 1 {
        let names: Vec<&str> = given.iter().map(|h| h.field.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "{}: a header carries one file, not several",
            names.join(", ")
        )));
    }
    Ok(given.into_iter().next())
}

/// Decodes or downloads a header file and uploads it (the session must be connected first:
/// nothing is downloaded for a session that could not send it).
async fn upload(
    s: &AppState,
    rec: &SessionRecord,
    h: HeaderFile<'_>,
    mimetype: Option<&str>,
    file_name: Option<String>,
) -> ApiResult<HeaderMedia> {
    if s.engine.state(&rec.name) != Live::Connected {
        return Err(EngineError::NotConnected(rec.name.clone()).into());
    }
    let fetcher = Fetcher {
        max_bytes: s.config.media_max_bytes,
        allow_private: s.config.media_allow_private_urls,
    };
    let mut file = input::load(h.kind, h.value, mimetype, &fetcher)
        .await
        .map_err(|e| ApiError::bad_request(format!("{}: {e}", h.field)))?;
    // OnWapp's default for template documents.
    if h.kind == MediaKind::Document
        && mimetype.is_none()
        && file.mimetype == MediaKind::Document.default_mime()
    {
        file.mimetype = "application/pdf".into();
    }
    Ok(s.engine
        .upload_header(&rec.name, h.kind, file, file_name)
        .await?)
}

fn context(
    quoted: Option<&Quoted>,
    chat: &whatsapp_rust::Jid,
) -> Result<Option<wa::ContextInfo>, ApiError> {
    quoted.map(|q| quote(q, chat)).transpose()
}

/// Wraps a legacy interactive message the way clients that still send them do.
fn view_once(inner: wa::Message) -> wa::Message {
    wa::Message {
        view_once_message: wa::message::FutureProofMessage {
            message: inner.into(),
        }
        .into(),
        ..Default::default()
    }
}

fn unique<'a>(field: &str, seen: &mut HashSet<&'a str>, id: &'a str) -> Result<(), ApiError> {
    if !seen.insert(id) {
        return Err(ApiError::bad_request(format!(
            "{field} must be unique: {id:?} appears more than once"
        )));
    }
    Ok(())
}

pub(super) async fn buttons(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendButtonsRequest>,
) -> ApiResult<Json<SendResponse>> {
    use wa::message::buttons_message::{Button, Header, HeaderType, button};
    let to = recipient("phone", &req.phone)?;
    let body = required("contentText", &req.content_text)?;
    if !(1..=MAX_BUTTONS).contains(&req.buttons.len()) {
        return Err(ApiError::bad_request(format!(
            "buttons must have between 1 and {MAX_BUTTONS} entries (got {})",
            req.buttons.len()
        )));
    }
    let mut ids = HashSet::new();
    let mut buttons = Vec::with_capacity(req.buttons.len());
    for (i, b) in req.buttons.iter().enumerate() {
        let id = required(&format!("buttons[{i}].buttonId"), &b.button_id)?;
        unique("buttons[].buttonId", &mut ids, id)?;
        let label = required(&format!("buttons[{i}].displayText"), &b.display_text)?;
        buttons.push(Button {
            button_id: Some(id.to_string()),
            button_text: button::ButtonText {
                display_text: Some(label.to_string()),
            }
            .into(),
            r#type: Some(button::Type::RESPONSE),
            ..Default::default()
        });
    }
    let header = text(&req.header_text);
    let message = wa::message::ButtonsMessage {
        content_text: Some(body.to_string()),
        footer_text: text(&req.footer_text),
        context_info: context(req.quoted.as_ref(), &to)?.into(),
        buttons,
        header_type: Some(if header.is_some() {
            HeaderType::TEXT
        } else {
            HeaderType::EMPTY
        }),
        header: header.map(Header::Text),
    };
    let message = view_once(wa::Message {
        buttons_message: message.into(),
        ..Default::default()
    });
    let nodes = biz_node("buttons").into_iter().collect();
    Ok(sent(
        s.engine
            .send_with_nodes(&rec.name, to, message, nodes)
            .await?,
    ))
}

pub(super) async fn list(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendListRequest>,
) -> ApiResult<Json<SendResponse>> {
    use wa::message::list_message::{ListType, Row, Section};
    let to = recipient("phone", &req.phone)?;
    let title = required("title", &req.title)?;
    let description = required("description", &req.description)?;
    let button = required("buttonText", &req.button_text)?;
    if req.sections.is_empty() {
        return Err(ApiError::bad_request("sections must have at least 1 entry"));
    }
    let mut ids = HashSet::new();
    let mut sections = Vec::with_capacity(req.sections.len());
    for (i, sec) in req.sections.iter().enumerate() {
        if sec.rows.is_empty() {
            return Err(ApiError::bad_request(format!(
                "sections[{i}].rows must have at least 1 entry"
            )));
        }
        let mut rows = Vec::with_capacity(sec.rows.len());
        for (j, r) in sec.rows.iter().enumerate() {
            let row_title = required(&format!("sections[{i}].rows[{j}].title"), &r.title)?;
            let id = required(&format!("sections[{i}].rows[{j}].rowId"), &r.row_id)?;
            unique("sections[].rows[].rowId", &mut ids, id)?;
            rows.push(Row {
                title: Some(row_title.to_string()),
                description: text(&r.description),
                row_id: Some(id.to_string()),
            });
        }
        sections.push(Section {
            title: text(&sec.title),
            rows,
        });
    }
    let message = wa::message::ListMessage {
        title: Some(title.to_string()),
        description: Some(description.to_string()),
        button_text: Some(button.to_string()),
        list_type: Some(ListType::SINGLE_SELECT),
        sections,
        footer_text: text(&req.footer_text),
        context_info: context(req.quoted.as_ref(), &to)?.into(),
        ..Default::default()
    };
    let message = view_once(wa::Message {
        list_message: message.into(),
        ..Default::default()
    });
    let nodes = biz_node("list").into_iter().collect();
    Ok(sent(
        s.engine
            .send_with_nodes(&rec.name, to, message, nodes)
            .await?,
    ))
}

/// Native flow buttons: `name` required, `params` (an object) sent as `buttonParamsJson`.
fn native_flow(
    field: &str,
    buttons: &[NativeFlowButton],
) -> Result<wa::message::interactive_message::NativeFlowMessage, ApiError> {
    use wa::message::interactive_message::native_flow_message::NativeFlowButton as Button;
    let mut out = Vec::with_capacity(buttons.len());
    for (i, b) in buttons.iter().enumerate() {
        let name = required(&format!("{field}[{i}].name"), &b.name)?;
        let params = match &b.params {
            None => "{}".to_string(),
            // Kept as the client's text, never as a tree.
            Some(p) if p.get().starts_with('{') => p.get().to_string(),
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "{field}[{i}].params must be a JSON object"
                )));
            }
        };
        out.push(Button {
            name: Some(name.to_string()),
            button_params_json: Some(params),
        });
    }
    Ok(wa::message::interactive_message::NativeFlowMessage {
        buttons: out,
        message_params_json: None,
        message_version: Some(1),
    })
}

/// Header, body and footer of an interactive message (or card); `None` parts are left out.
fn envelope(
    title: Option<String>,
    media: Option<HeaderMedia>,
    body: Option<String>,
    footer: Option<String>,
) -> wa::message::InteractiveMessage {
    use wa::message::interactive_message::{Body, Footer, Header, header::Media};
    let header = match (title, media) {
        (None, None) => None,
        (title, media) => Some(Header {
            title,
            has_media_attachment: Some(media.is_some()),
            media: media.map(|m| match m {
                HeaderMedia::Image(i) => Media::ImageMessage(Box::new(i)),
                HeaderMedia::Video(v) => Media::VideoMessage(Box::new(v)),
                HeaderMedia::Document(d) => Media::DocumentMessage(Box::new(d)),
            }),
            ..Default::default()
        }),
    };
    wa::message::InteractiveMessage {
        header: header.into(),
        body: body.map(|t| Body { text: Some(t) }).into(),
        footer: footer
            .map(|t| Footer {
                text: Some(t),
                ..Default::default()
            })
            .into(),
        ..Default::default()
    }
}

pub(super) async fn interactive(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendInteractiveRequest>,
) -> ApiResult<Json<SendResponse>> {
    use wa::message::interactive_message::InteractiveMessage as Payload;
    let to = recipient("phone", &req.phone)?;
    let body = required("body", &req.body)?;
    if req.buttons.is_empty() {
        return Err(ApiError::bad_request("buttons must have at least 1 entry"));
    }
    let flow = native_flow("buttons", &req.buttons)?;
    let context = context(req.quoted.as_ref(), &to)?;
    let file = header_file(
        "",
        &[
            ("image", MediaKind::Image, &req.image),
            ("video", MediaKind::Video, &req.video),
        ],
    )?;
    let media = match file {
        Some(h) => Some(upload(&s, &rec, h, req.mimetype.as_deref(), None).await?),
        None => None,
    };
    let mut im = envelope(
        text(&req.title),
        media,
        Some(body.to_string()),
        text(&req.footer),
    );
    im.interactive_message = Some(Payload::NativeFlowMessage(Box::new(flow)));
    im.context_info = context.into();
    let message = wa::Message {
        interactive_message: im.into(),
        ..Default::default()
    };
    Ok(sent(s.engine.send(&rec.name, to, message).await?))
}

/// One hydrated template button; exactly one of its three kinds.
fn template_button(i: usize, b: &TemplateButton) -> Result<wa::HydratedTemplateButton, ApiError> {
    use wa::hydrated_template_button::{
        HydratedButton, HydratedCallButton, HydratedQuickReplyButton, HydratedURLButton,
    };
    let field = format!("buttons[{i}]");
    let kinds = [
        b.quick_reply.is_some(),
        b.url_button.is_some(),
        b.call_button.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(ApiError::bad_request(format!(
            "{field} needs exactly one of quickReply, urlButton, callButton"
        )));
    }
    let button = if let Some(q) = &b.quick_reply {
        HydratedButton::QuickReplyButton(Box::new(HydratedQuickReplyButton {
            display_text: Some(
                required(&format!("{field}.quickReply.displayText"), &q.display_text)?.into(),
            ),
            id: Some(required(&format!("{field}.quickReply.id"), &q.id)?.into()),
        }))
    } else if let Some(u) = &b.url_button {
        let url = required(&format!("{field}.urlButton.url"), &u.url)?;
        if url::Url::parse(url).is_err() {
            return Err(ApiError::bad_request(format!(
                "{field}.urlButton.url is not a valid URL"
            )));
        }
        HydratedButton::UrlButton(Box::new(HydratedURLButton {
            display_text: Some(
                required(&format!("{field}.urlButton.displayText"), &u.display_text)?.into(),
            ),
            url: Some(url.into()),
            ..Default::default()
        }))
    } else if let Some(c) = &b.call_button {
        HydratedButton::CallButton(Box::new(HydratedCallButton {
            display_text: Some(
                required(&format!("{field}.callButton.displayText"), &c.display_text)?.into(),
            ),
            phone_number: Some(
                required(&format!("{field}.callButton.phoneNumber"), &c.phone_number)?.into(),
            ),
        }))
    } else {
        return Err(ApiError::bad_request(format!(
            "{field} needs exactly one of quickReply, urlButton, callButton"
        )));
    };
    Ok(wa::HydratedTemplateButton {
        index: Some(b.index.unwrap_or(i as u32 + 1)),
        hydrated_button: Some(button),
    })
}

pub(super) async fn template(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendTemplateRequest>,
) -> ApiResult<Json<SendResponse>> {
    use wa::message::template_message::{
        Format, HydratedFourRowTemplate, hydrated_four_row_template::Title,
    };
    let to = recipient("phone", &req.phone)?;
    let content = required("content", &req.content)?;
    if req.buttons.is_empty() {
        return Err(ApiError::bad_request("buttons must have at least 1 entry"));
    }
    let buttons = req
        .buttons
        .iter()
        .enumerate()
        .map(|(i, b)| template_button(i, b))
        .collect::<Result<Vec<_>, _>>()?;
    let context = context(req.quoted.as_ref(), &to)?;
    let file = header_file(
        "",
        &[
            ("image", MediaKind::Image, &req.image),
            ("video", MediaKind::Video, &req.video),
            ("document", MediaKind::Document, &req.document),
        ],
    )?;
    let title = text(&req.title);
    if let (Some(_), Some(h)) = (&title, &file) {
        return Err(ApiError::bad_request(format!(
            "title: a template header is a title or a file ({}), not both",
            h.field
        )));
    }
    let title = match file {
        Some(h) => {
            let name = text(&req.filename);
            match upload(&s, &rec, h, req.mimetype.as_deref(), name).await? {
                HeaderMedia::Image(i) => Some(Title::ImageMessage(Box::new(i))),
                HeaderMedia::Video(v) => Some(Title::VideoMessage(Box::new(v))),
                HeaderMedia::Document(d) => Some(Title::DocumentMessage(Box::new(d))),
            }
        }
        None => title.map(Title::HydratedTitleText),
    };
    let hydrated = HydratedFourRowTemplate {
        hydrated_content_text: Some(content.to_string()),
        hydrated_footer_text: text(&req.footer),
        hydrated_buttons: buttons,
        title,
        ..Default::default()
    };
    let template = wa::message::TemplateMessage {
        context_info: context.into(),
        hydrated_template: hydrated.clone().into(),
        format: Some(Format::HydratedFourRowTemplate(Box::new(hydrated))),
        ..Default::default()
    };
    let message = view_once(wa::Message {
        template_message: template.into(),
        ..Default::default()
    });
    Ok(sent(s.engine.send(&rec.name, to, message).await?))
}

pub(super) async fn carousel(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<SendCarouselRequest>,
) -> ApiResult<Json<SendResponse>> {
    use wa::message::interactive_message::{CarouselMessage, InteractiveMessage as Payload};
    let to = recipient("phone", &req.phone)?;
    if !(1..=MAX_CARDS).contains(&req.cards.len()) {
        return Err(ApiError::bad_request(format!(
            "cards must have between 1 and {MAX_CARDS} entries (got {})",
            req.cards.len()
        )));
    }
    // Everything is checked before any file is downloaded or uploaded.
    let empty = CarouselCardHeader::default();
    let mut checked = Vec::with_capacity(req.cards.len());
    for (i, c) in req.cards.iter().enumerate() {
        let header = c.header.as_ref().unwrap_or(&empty);
        let file = header_file(
            &format!("cards[{i}].header."),
            &[
                ("image", MediaKind::Image, &header.image),
                ("video", MediaKind::Video, &header.video),
            ],
        )?;
        let (title, body, footer) = (text(&header.title), text(&c.body), text(&c.footer));
        let buttons = c.buttons.as_deref().unwrap_or_default();
        if title.is_none()
            && file.is_none()
            && body.is_none()
            && footer.is_none()
            && buttons.is_empty()
        {
            return Err(ApiError::bad_request(format!(
                "cards[{i}] is empty: give it a header, body, footer or buttons"
            )));
        }
        let flow = native_flow(&format!("cards[{i}].buttons"), buttons)?;
        checked.push((title, file, header.mimetype.as_deref(), body, footer, flow));
    }
    let context = context(req.quoted.as_ref(), &to)?;
    let mut cards = Vec::with_capacity(checked.len());
    for (title, file, mimetype, body, footer, flow) in checked {
        let media = match file {
            Some(h) => Some(upload(&s, &rec, h, mimetype, None).await?),
            None => None,
        };
        let mut card = envelope(title, media, body, footer);
        card.interactive_message = Some(Payload::NativeFlowMessage(Box::new(flow)));
        cards.push(card);
    }
    let mut im = envelope(text(&req.title), None, text(&req.body), text(&req.footer));
    im.interactive_message = Some(Payload::CarouselMessage(Box::new(CarouselMessage {
        cards,
        message_version: Some(1),
        ..Default::default()
    })));
    im.context_info = context.into();
    let message = wa::Message {
        interactive_message: im.into(),
        ..Default::default()
    };
    Ok(sent(s.engine.send(&rec.name, to, message).await?))
}
