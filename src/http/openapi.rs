//! The OpenAPI document, generated from the endpoint catalog and the DTO schemas, served at
//! `/swagger/doc.json` with Swagger UI at `/swagger/index.html`.

use axum::Router;
use utoipa::openapi::{
    Components, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder, ResponsesBuilder,
    path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn},
    request_body::RequestBodyBuilder,
    schema::{
        ArrayItems, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
    },
    security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme},
};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    app::AppState,
    http::{
        catalog::{ENDPOINTS, Endpoint, Status},
        dto,
        unimplemented::axum_path,
    },
};

pub fn router() -> Router<AppState> {
    // No call to swagger.io's online validator: the page talks to this server only.
    let config = utoipa_swagger_ui::Config::default().validator_url("none");
    Router::from(
        SwaggerUi::new("/swagger")
            .url("/swagger/doc.json", document())
            .config(config),
    )
}

const SECURITY: &str = "apiKey";

/// Builds the whole document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for e in ENDPOINTS {
        let method = match e.method {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "DELETE" => HttpMethod::Delete,
            _ => continue,
        };
        paths.add_path_operation(openapi_path(e.path), vec![method], operation(e));
    }
    let mut components = Components::new();
    components.schemas.extend(dto::schemas());
    // Request shapes only (and what they refer to): answers are described as they are.
    for name in request_schemas(&components) {
        if let Some(RefOr::T(Schema::Object(obj))) = components.schemas.get_mut(&name) {
            constrain(&name, obj);
        }
    }
    components.add_security_scheme(
        SECURITY,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "The global API key, or a session's key (which reaches only that session).",
        ))),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("onwapp-rs")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "OnWapp-compatible WhatsApp REST bridge. Endpoints marked \"not implemented\" \
                     answer 501 {\"error\": \"not implemented\"} until they are built.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// A phone number with country code, or a person's JID (`engine::jid::parse_recipient`
/// takes these and more).
const PHONE: &str = r"^(\+?[1-9][0-9]{6,14}|[1-9][0-9]{6,14}@(s\.whatsapp\.net|lid))$";
/// [`PHONE`] or a group's JID: a chat.
const CHAT: &str = r"^(\+?[1-9][0-9]{6,14}|[1-9][0-9]{6,14}@(s\.whatsapp\.net|lid)|[0-9]{1,30}(-[0-9]{1,30})?@g\.us)$";
/// A media value: base64, a base64 data URL, or an http(s) URL (`media::input`).
const MEDIA: &str = r"^(([A-Za-z0-9+/]{4})+|data:[a-z]+/[a-z0-9.+-]+;base64,([A-Za-z0-9+/]{4})+|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?)$";

/// What the handlers check of a request field, by `Schema.field` or by the field's name: a
/// client generated from the document sends only what is accepted. Every rule is narrower
/// than, or equal to, the handler's check.
fn pattern_for(schema: &str, name: &str) -> Option<&'static str> {
    Some(match (schema, name) {
        ("ChatPresenceRequest", "state") => "^(composing|recording|paused)$",
        ("DisappearingTimerRequest", "timer") => "^(24h|7d|90d|off)$",
        ("UpdateBlocklistRequest", "action") => "^(block|unblock)$",
        ("GroupMemberAddModeRequest", "mode") => "^(admin_add|all_member_add)$",
        ("GroupRequestActionRequest", "action") => "^(approve|reject)$",
        ("UpdateSettingsRequest", "lastSeen" | "profilePhoto" | "status") => {
            "^(all|contacts|contact_blacklist|none)$"
        }
        ("UpdateSettingsRequest", "online") => "^(all|match_last_seen)$",
        ("UpdateSettingsRequest", "readReceipts") => "^(all|none)$",
        ("UpdateSettingsRequest", "groupAdd") => "^(all|contacts|contact_blacklist)$",
        ("UpdateSettingsRequest", "callAdd") => "^(all|known)$",
        ("UpdateSettingsRequest", "defaultDisappearingTimer") => "^(off|24h|7d|90d)$",
        ("ChatPresenceRequest", "media") => "^(audio)?$",
        ("CreateSessionRequest", "session") => "^[A-Za-z0-9_-]{1,64}$",
        // Query parameters, by the operation's path.
        ("/:session/media/download", "format") => "^(json|file)$",
        ("/:session/qr", "format") => "^(json|image)$",
        // Empty turns the webhook off (with `enabled: false`).
        ("WebhookRequest", "url") => r"^(https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?)?$",
        (_, "phone" | "phones" | "participants" | "participant" | "contactPhone" | "callFrom") => {
            PHONE
        }
        (_, "chatJid" | "senderJid") => CHAT,
        (_, "image" | "video" | "audio" | "document" | "sticker") => MEDIA,
        // `groups::group_jid`.
        (_, "groupId" | "communityId" | "childGroupId" | "linkedGroupId" | "parentGroupId") => {
            r"^[0-9]{1,30}(-[0-9]{1,30})?(@g\.us)?$"
        }
        // `newsletters::newsletter_jid`.
        (_, "newsletterId") => r"^[0-9]{1,30}@newsletter$",
        // `groups::invite_code`.
        (_, "inviteLink") => r"^(https://chat\.whatsapp\.com/)?[A-Za-z0-9]{1,64}$",
        (_, "messageIds" | "ids" | "messageId" | "pollMessageId" | "options") => r"\S",
        _ => return None,
    })
}

/// How many items a request array must have (`(min, max)`), where the handler checks it.
fn items_for(schema: &str, name: &str) -> Option<(usize, Option<usize>)> {
    Some(match (schema, name) {
        ("SendButtonsRequest", "buttons") => (1, Some(3)),
        (_, "buttons" | "rows" | "sections") => (1, None),
        (_, "cards") => (1, Some(10)),
        (_, "options") => (2, Some(12)),
        (_, "serverIds") => (1, None),
        _ => return None,
    })
}

/// A string field's rule: its pattern when it has one; otherwise, when a blank value is
/// refused (`<field> is required`), at least one character that is not a space.
fn string_rule(field: &mut Object, pattern: Option<&str>, blank_refused: bool) {
    if let Some(p) = pattern {
        field.pattern = Some(p.to_string());
        field.min_length = Some(1);
    } else if blank_refused {
        field.min_length = Some(1);
        field.pattern.get_or_insert_with(|| r"\S".to_string());
    }
}

/// A required string must not be blank (the handlers answer `<field> is required`); fields
/// with a rule get it, in arrays too; integers named like offsets and ids are not negative.
fn constrain(schema: &str, obj: &mut Object) {
    let required: Vec<String> = obj.required.clone();
    for (name, prop) in obj.properties.iter_mut() {
        let RefOr::T(prop) = prop else { continue };
        match prop {
            Schema::Object(field) if is_string(&field.schema_type) => {
                let blank_refused = required.contains(name) && field.enum_values.is_none();
                string_rule(field, pattern_for(schema, name), blank_refused);
            }
            Schema::Object(field) if is_integer(&field.schema_type) => {
                if matches!(name.as_str(), "offset" | "limit" | "serverId") {
                    field.minimum = Some(if name == "serverId" { 1 } else { 0 }.into());
                }
            }
            Schema::Object(field) if matches!(name.as_str(), "latitude" | "longitude") => {
                let bound = if name == "latitude" { 90 } else { 180 };
                field.minimum = Some((-bound).into());
                field.maximum = Some(bound.into());
            }
            Schema::Array(list) => {
                if let Some((min, max)) = items_for(schema, name) {
                    list.min_items = Some(min);
                    list.max_items = max;
                }
                // The handlers refuse repeated poll options.
                if name == "options" {
                    list.unique_items = true;
                }
                if let ArrayItems::RefOrSchema(item) = &mut list.items
                    && let RefOr::T(Schema::Object(item)) = item.as_mut()
                {
                    if is_string(&item.schema_type)
                        && let Some(p) = pattern_for(schema, name)
                    {
                        item.pattern = Some(p.to_string());
                        item.min_length = Some(1);
                        if required.contains(name) {
                            list.min_items.get_or_insert(1);
                        }
                    } else if is_integer(&item.schema_type) && name == "serverIds" {
                        item.minimum = Some(1.into());
                    }
                }
            }
            Schema::Object(inner) => constrain(schema, inner),
            _ => {}
        }
    }
}

fn is_integer(t: &SchemaType) -> bool {
    match t {
        SchemaType::Type(Type::Integer) => true,
        SchemaType::Array(types) => types.contains(&Type::Integer),
        _ => false,
    }
}

/// The multipart form a file-carrying route also takes (OnWapp 0.2.8's upload): the file in
/// `file`, the rest as text fields (`http::form`).
fn multipart_form(body: &str) -> Option<(&'static str, utoipa::openapi::Content)> {
    let (required, optional): (&[&str], &[&str]) = match body {
        "SendImageRequest" | "SendVideoRequest" => (&["phone"], &["caption", "mimeType"]),
        "SendAudioRequest" => (&["phone"], &["ptt", "mimeType"]),
        "SendDocumentRequest" => (&["phone", "filename"], &["mimeType"]),
        "SendStickerRequest" => (&["phone"], &["mimeType"]),
        "SetProfilePictureRequest" => (&[], &[]),
        "SetGroupPhotoRequest" => (&["groupId"], &[]),
        _ => return None,
    };
    let file = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .min_length(Some(1))
        .description(Some("The file's bytes (not empty), with its Content-Type"));
    let mut form = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("file", file)
        .required("file");
    for name in required.iter().chain(optional) {
        let mut field = Object::with_type(Type::String);
        string_rule(&mut field, pattern_for(body, name), required.contains(name));
        form = form.property(*name, field);
    }
    for name in required {
        form = form.required(*name);
    }
    Some((
        "multipart/form-data",
        ContentBuilder::new()
            .schema(Some(Schema::Object(form.build())))
            .build(),
    ))
}

/// The request bodies' schemas and every schema they refer to.
fn request_schemas(components: &Components) -> Vec<String> {
    let mut names: Vec<String> = ENDPOINTS
        .iter()
        .filter_map(|e| e.request_body.map(str::to_string))
        .collect();
    let mut i = 0;
    while i < names.len() {
        if let Some(RefOr::T(schema)) = components.schemas.get(&names[i]) {
            let mut refs = Vec::new();
            collect_refs(schema, &mut refs);
            for r in refs {
                if !names.contains(&r) {
                    names.push(r);
                }
            }
        }
        i += 1;
    }
    names
}

fn collect_refs(schema: &Schema, out: &mut Vec<String>) {
    let mut take = |r: &RefOr<Schema>| match r {
        RefOr::Ref(r) => {
            if let Some(name) = r.ref_location.rsplit('/').next() {
                out.push(name.to_string());
            }
        }
        RefOr::T(inner) => collect_refs(inner, out),
    };
    match schema {
        Schema::Object(o) => o.properties.values().for_each(&mut take),
        Schema::Array(a) => {
            if let ArrayItems::RefOrSchema(item) = &a.items {
                take(item);
            }
        }
        Schema::OneOf(o) => o.items.iter().for_each(&mut take),
        Schema::AllOf(o) => o.items.iter().for_each(&mut take),
        Schema::AnyOf(o) => o.items.iter().for_each(&mut take),
        _ => {}
    }
}

/// A string, or a string or null (an optional field): a pattern applies to the string.
fn is_string(t: &SchemaType) -> bool {
    match t {
        SchemaType::Type(Type::String) => true,
        SchemaType::Array(types) => types.contains(&Type::String),
        _ => false,
    }
}

/// OpenAPI's `{param}` path spelling (the same as axum's).
fn openapi_path(contract: &str) -> String {
    axum_path(contract)
}

/// A query parameter's schema: a string, with the rules of [`pattern_for`] or, when
/// required, not blank; paging numbers are integers, `revoke` and `reset` booleans.
fn query_schema(path: &str, name: &str, required: bool) -> Object {
    // Paging: a limit of 0 or less means the default; an offset is not negative. The dead
    // letters page takes a limit from 0 to 500.
    if path == "/:session/webhook/failed" && name == "limit" {
        let mut o = Object::with_type(Type::Integer);
        o.minimum = Some(0.into());
        o.maximum = Some(500.into());
        return o;
    }
    if matches!(name, "limit" | "batchSize") {
        let mut o = Object::with_type(Type::Integer);
        o.minimum = Some(i64::MIN.into());
        o.maximum = Some(i64::MAX.into());
        return o;
    }
    if name == "offset" {
        let mut o = Object::with_type(Type::Integer);
        o.minimum = Some(0.into());
        o.maximum = Some(i64::MAX.into());
        return o;
    }
    if matches!(name, "revoke" | "reset") {
        return Object::with_type(Type::Boolean);
    }
    let mut o = Object::with_type(Type::String);
    string_rule(&mut o, pattern_for(path, name), required);
    o
}

fn schema_ref(name: &str) -> RefOr<utoipa::openapi::schema::Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn error_response(desc: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(desc)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema_ref("ErrorBody")))
                .build(),
        )
        .build()
}

fn operation(e: &Endpoint) -> utoipa::openapi::path::Operation {
    let mut op = OperationBuilder::new()
        .tag(e.section)
        .summary(Some(e.summary))
        .operation_id(Some(format!(
            "{}_{}",
            e.method.to_ascii_lowercase(),
            e.path.trim_start_matches('/').replace([':', '/', '-'], "_")
        )));
    if e.status == Status::NotImplemented {
        op = op.description(Some(
            "Not implemented yet: answers 501 after authentication and session lookup.",
        ));
    }
    for seg in e.path.split('/').filter_map(|s| s.strip_prefix(':')) {
        op = op.parameter(
            ParameterBuilder::new()
                .name(seg)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("Session name"))
                .schema(Some(Object::with_type(Type::String))),
        );
    }
    for q in e.query {
        op = op.parameter(
            ParameterBuilder::new()
                .name(q.name)
                .parameter_in(ParameterIn::Query)
                .required(if q.required {
                    Required::True
                } else {
                    Required::False
                })
                .description(Some(q.description))
                .schema(Some(query_schema(e.path, q.name, q.required))),
        );
    }
    if let Some(body) = e.request_body {
        let mut request = RequestBodyBuilder::new();
        if let Some((media_type, form)) = multipart_form(body) {
            request = request.content(media_type, form);
        }
        op = op.request_body(Some(
            request
                .required(Some(if e.body_optional {
                    Required::False
                } else {
                    Required::True
                }))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema_ref(body))).build(),
                )
                .build(),
        ));
    }
    let ok_code = if e.method == "POST" && e.path == "/sessions" {
        "201"
    } else {
        "200"
    };
    let ok = match e.response {
        Some(name) => ResponseBuilder::new().description("Success").content(
            "application/json",
            ContentBuilder::new().schema(Some(schema_ref(name))).build(),
        ),
        None => ResponseBuilder::new().description("Success"),
    };
    let mut responses = ResponsesBuilder::new()
        .response(ok_code, ok.build())
        .response(
            "400",
            error_response("Invalid input; the message names the field"),
        )
        .response(
            "429",
            error_response("Rate limit exceeded (see Retry-After)"),
        );
    if e.auth {
        op = op.security(SecurityRequirement::new(SECURITY, Vec::<String>::new()));
        responses = responses
            .response(
                "401",
                error_response("Missing or invalid Authorization header"),
            )
            .response(
                "403",
                error_response(if e.path.starts_with("/admin/") {
                    "A session key (operator routes need the global key)"
                } else {
                    "A session key used on another session"
                }),
            );
    }
    if e.method == "POST" && e.path == "/sessions" {
        responses = responses.response(
            "409",
            error_response("A session with this name (or this apiKey) exists already"),
        );
    }
    if e.path.contains(":session") {
        responses = responses
            .response("404", error_response("Session not found"))
            .response(
                "409",
                error_response(
                    "The session is not in a state that allows this (not connected, not paired, \
                     already paired, ...); the message says which",
                ),
            );
    }
    if e.status == Status::NotImplemented {
        responses = responses.response("501", error_response("Not implemented yet"));
    }
    op.responses(responses.build()).build()
}
