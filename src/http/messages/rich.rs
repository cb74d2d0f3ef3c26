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
    engine::rich::biz_node,
    error::{ApiError, ApiResult},
    http::{
        dto::{
            NativeFlowButton, Quoted, SendButtonsRequest, SendCarouselRequest,
            SendInteractiveRequest, SendListRequest, SendResponse, SendTemplateRequest,
            TemplateButton,
        },
        extract::{JsonBody, SessionCtx},
    },
};

const MAX_BUTTONS: usize = 3;
const MAX_CARDS: usize = 10;

/// `Some(text)` unless blank.
fn text(value: &Option<String>) -> Option<String> {
    value.as_ref().filter(|v| !v.trim().is_empty()).cloned()
}

/// Media headers need uploads, which are not built yet.
fn no_media(fields: &[&Option<String>]) -> Result<(), ApiError> {
    if fields.iter().any(|f| text(f).is_some()) {
        return Err(ApiError::NotImplemented);
    }
    Ok(())
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
            Some(p @ serde_json::Value::Object(_)) => p.to_string(),
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
    body: Option<String>,
    footer: Option<String>,
) -> wa::message::InteractiveMessage {
    use wa::message::interactive_message::{Body, Footer, Header};
    wa::message::InteractiveMessage {
        header: title
            .map(|t| Header {
                title: Some(t),
                has_media_attachment: Some(false),
                ..Default::default()
            })
            .into(),
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
    no_media(&[&req.image, &req.video])?;
    let mut im = envelope(text(&req.title), Some(body.to_string()), text(&req.footer));
    im.interactive_message = Some(Payload::NativeFlowMessage(Box::new(flow)));
    im.context_info = context(req.quoted.as_ref(), &to)?.into();
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
    no_media(&[&req.image, &req.video, &req.document])?;
    let hydrated = HydratedFourRowTemplate {
        hydrated_content_text: Some(content.to_string()),
        hydrated_footer_text: text(&req.footer),
        hydrated_buttons: buttons,
        title: text(&req.title).map(Title::HydratedTitleText),
        ..Default::default()
    };
    let template = wa::message::TemplateMessage {
        context_info: context(req.quoted.as_ref(), &to)?.into(),
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
    let mut cards = Vec::with_capacity(req.cards.len());
    for (i, c) in req.cards.iter().enumerate() {
        let header = c.header.clone().unwrap_or_default();
        no_media(&[&header.image, &header.video])?;
        let (title, body, footer) = (text(&header.title), text(&c.body), text(&c.footer));
        let buttons = c.buttons.as_deref().unwrap_or_default();
        if title.is_none() && body.is_none() && footer.is_none() && buttons.is_empty() {
            return Err(ApiError::bad_request(format!(
                "cards[{i}] is empty: give it a header title, body, footer or buttons"
            )));
        }
        let mut card = envelope(title, body, footer);
        let flow = native_flow(&format!("cards[{i}].buttons"), buttons)?;
        card.interactive_message = Some(Payload::NativeFlowMessage(Box::new(flow)));
        cards.push(card);
    }
    let mut im = envelope(text(&req.title), text(&req.body), text(&req.footer));
    im.interactive_message = Some(Payload::CarouselMessage(Box::new(CarouselMessage {
        cards,
        message_version: Some(1),
        ..Default::default()
    })));
    im.context_info = context(req.quoted.as_ref(), &to)?.into();
    let message = wa::Message {
        interactive_message: im.into(),
        ..Default::default()
    };
    Ok(sent(s.engine.send(&rec.name, to, message).await?))
}
