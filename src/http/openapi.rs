//! The OpenAPI document, generated from the endpoint catalog and the DTO schemas, served at
//! `/swagger/doc.json` with Swagger UI at `/swagger/index.html`.

use axum::Router;
use utoipa::openapi::{
    Components, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
    ResponseBuilder, ResponsesBuilder,
    path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn},
    request_body::RequestBodyBuilder,
    schema::{Object, Type},
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

/// OpenAPI's `{param}` path spelling (the same as axum's).
fn openapi_path(contract: &str) -> String {
    axum_path(contract)
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
                .schema(Some(Object::with_type(Type::String))),
        );
    }
    if let Some(body) = e.request_body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
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
    if e.path.contains(":session") {
        responses = responses.response("404", error_response("Session not found"));
    }
    if e.status == Status::NotImplemented {
        responses = responses.response("501", error_response("Not implemented yet"));
    }
    op.responses(responses.build()).build()
}
