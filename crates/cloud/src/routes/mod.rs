//! One module per feature, each exposing `router()`.

pub mod accounts;
pub mod backup;
pub mod consents;
pub mod dashboard;
pub mod health;
pub mod internal;
pub mod me;
pub mod messages;
pub mod moves;
pub mod ops;
pub mod sessions;

use utoipa::OpenApi;

/// The API description served at `/v1/openapi.json`, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sovereign cloud API", version = "1"),
    paths(
        accounts::signup,
        accounts::verify,
        accounts::sign_in,
        sessions::list,
        sessions::revoke,
        me::me,
        me::export,
        me::delete_account,
        consents::list,
        consents::history,
        consents::grant,
        consents::withdraw,
        messages::send,
        messages::list,
        messages::ack,
        messages::socket,
        backup::put_item,
        backup::get_item,
        backup::delete_item,
        backup::changes,
        health::healthz,
        health::metrics,
        ops::create_request,
        ops::show_request,
        ops::decide,
        ops::read_data,
        ops::access_log,
        ops::consistency,
    ),
    components(schemas(crate::config::Notice, crate::domain::ContactRecord, crate::domain::SmsRecord)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
