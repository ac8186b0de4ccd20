//! Sign-up with a phone number verified by a one-time code, and sign-in.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sovereign_crypto::{DataKey, OneTimeCode, digest_sha256, hash_password, verify_password};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::domain::{PhoneNumber, UserId, check_device_name, check_password};
use crate::error::ApiError;
use crate::extract::{ClientIp, StrictJson, aad};
use crate::limits::{Limited, Subject};
use crate::state::AppState;
use crate::store::{NewVerification, SessionRow, VerifyOutcome};

const CODE_DIGITS: u32 = 6;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts", post(signup))
        .route("/v1/accounts/verify", post(verify))
        .route(
            "/v1/sessions",
            post(sign_in).get(crate::routes::sessions::list),
        )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// International format, e.g. "+91 98123 45678".
    phone: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[derive(Serialize, ToSchema)]
pub struct SignupResponse {
    verification_id: String,
}

/// The digest a code is stored under, bound to its verification.
fn code_digest(verification_id: &str, code: &str) -> [u8; 32] {
    digest_sha256(format!("{verification_id}:{code}").as_bytes())
}

async fn hash_in_background(password: SecretString) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password(password.expose_secret()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// Starts a sign-up: sends a one-time code to the phone. Answers the same whether or not the
/// number already has an account.
#[utoipa::path(post, path = "/v1/accounts", request_body = SignupRequest,
    responses((status = 202, body = SignupResponse), (status = 422, description = "invalid_phone or invalid_field"), (status = 429)))]
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    StrictJson(request): StrictJson<SignupRequest>,
) -> Result<(StatusCode, Json<SignupResponse>), ApiError> {
    state.limits.check_source(Limited::Signup, ip)?;
    let phone = PhoneNumber::parse(&request.phone)?;
    // Texts to one number are bounded whatever the source: no one floods a victim's phone.
    state.limits.check(
        Limited::Signup,
        &[Subject::Phone(state.keys.phone_index(&phone))],
    )?;
    check_password(request.password.expose_secret())?;
    // A region never creates a user whose jurisdiction puts them elsewhere.
    let home = state.policies.residency.home_region(phone.country());
    if home != &state.region.id {
        return Err(state.redirect_to(home, "/v1/accounts"));
    }
    let now = state.now_ms();
    let user_id = UserId::random();
    let verification_id = uuid::Uuid::new_v4().to_string();
    let key = DataKey::generate().map_err(ApiError::internal)?;
    let phone_sealed = key
        .seal(
            &aad("users", &user_id, user_id.as_str(), "phone"),
            phone.as_e164().as_bytes(),
        )
        .map_err(ApiError::internal)?;
    let wrapped_key = state
        .keys
        .wrap(&key, &user_id)
        .map_err(ApiError::Internal)?;
    let password_hash = hash_in_background(request.password).await?;
    let code = OneTimeCode::generate(CODE_DIGITS).map_err(ApiError::internal)?;
    let ttl_minutes = state.policies.retention.verification_codes_minutes;
    state
        .store
        .create_verification(NewVerification {
            id: verification_id.clone(),
            user_id: user_id.to_string(),
            phone_index: state.keys.phone_index(&phone),
            phone_sealed,
            password_hash,
            wrapped_key,
            code_digest: code_digest(&verification_id, &code),
            created_at: now,
            expires_at: now + i64::from(ttl_minutes) * 60_000,
        })
        .await?;
    let text = format!("Your Sovereign code is {code}. It expires in {ttl_minutes} minutes.");
    state
        .sms
        .send(phone.as_e164(), &code, &text)
        .map_err(ApiError::Internal)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SignupResponse { verification_id }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    verification_id: String,
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    user_id: String,
    region: String,
}

/// Completes a sign-up with the code sent by SMS and creates the account.
#[utoipa::path(post, path = "/v1/accounts/verify", request_body = VerifyRequest,
    responses((status = 201, body = VerifyResponse), (status = 404), (status = 409, description = "verification_used or phone_taken"),
              (status = 410, description = "verification_expired"), (status = 422, description = "wrong_code"), (status = 429)))]
pub async fn verify(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    StrictJson(request): StrictJson<VerifyRequest>,
) -> Result<(StatusCode, Json<VerifyResponse>), ApiError> {
    state.limits.check_source(Limited::Verification, ip)?;
    if uuid::Uuid::parse_str(&request.verification_id).is_err() {
        return Err(ApiError::NotFound);
    }
    let code_ok = request.code.len() == CODE_DIGITS as usize
        && request.code.bytes().all(|b| b.is_ascii_digit());
    if !code_ok {
        return Err(ApiError::invalid(
            "code",
            format!("must be {CODE_DIGITS} digits"),
        ));
    }
    let outcome = state
        .store
        .verify(
            request.verification_id.clone(),
            code_digest(&request.verification_id, &request.code),
            state.policies.limits.code_attempts_max,
            state.region.id.to_string(),
            state.now_ms(),
        )
        .await?;
    match outcome {
        VerifyOutcome::Created {
            user_id,
            phone_index,
        } => {
            let index: [u8; 32] = phone_index
                .as_slice()
                .try_into()
                .map_err(ApiError::internal)?;
            let claimed = state
                .directory
                .claim(
                    index,
                    user_id.clone(),
                    state.region.id.clone(),
                    state.now_ms(),
                )
                .await;
            if let Err(error) = claimed {
                // The number was registered in another region meanwhile: undo this account.
                state.store.shred_user(user_id.clone()).await?;
                state.store.purge_user(user_id).await?;
                return Err(error.into());
            }
            Ok((
                StatusCode::CREATED,
                Json(VerifyResponse {
                    user_id,
                    region: state.region.id.to_string(),
                }),
            ))
        }
        VerifyOutcome::WrongCode { attempts_left } => Err(ApiError::WrongCode { attempts_left }),
        VerifyOutcome::TooManyAttempts => Err(ApiError::TooManyAttempts),
        VerifyOutcome::AlreadyUsed => Err(ApiError::VerificationUsed),
        VerifyOutcome::Expired => Err(ApiError::VerificationExpired),
        VerifyOutcome::Unknown => Err(ApiError::NotFound),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    phone: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// A name for this device, shown in the account's session list.
    device_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignInResponse {
    token: String,
    expires_at: String,
}

/// A hash to verify against when the number has no account, so that the answer takes as long as
/// for a real account and timing does not reveal which numbers are registered.
pub(crate) static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // Invariant: hashing a constant only fails if the random generator fails, and then the server
    // cannot work at all.
    hash_password("sovereign-timing-equaliser").expect("dummy password hash")
});

/// Signs in on a device; returns a bearer token bound to it.
#[utoipa::path(post, path = "/v1/sessions", request_body = SignInRequest,
    responses((status = 201, body = SignInResponse), (status = 401, description = "invalid_credentials"), (status = 429)))]
pub async fn sign_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    StrictJson(request): StrictJson<SignInRequest>,
) -> Result<(StatusCode, Json<SignInResponse>), ApiError> {
    state.limits.check_source(Limited::Login, ip)?;
    let phone = PhoneNumber::parse(&request.phone)?;
    // Password guesses against one account are bounded whatever the source.
    state.limits.check(
        Limited::Login,
        &[Subject::Phone(state.keys.phone_index(&phone))],
    )?;
    check_device_name(&request.device_name)?;
    let index = state.keys.phone_index(&phone);
    let user = state.store.user_by_phone_index(index).await?;
    if user.is_none() {
        // Send the client where the residency policy puts the number, which is public and the
        // same whether or not the number is registered. Never by the directory: for a number
        // that moved away from here it would name the new region, and so say that the number
        // is registered. Such a number is answered here exactly as an unknown one (the same
        // dummy hash, `401`); its phone finds the new region from its tokens' redirects.
        let home = state.policies.residency.home_region(phone.country());
        if home != &state.region.id {
            return Err(state.redirect_to(home, "/v1/sessions"));
        }
    }
    let stored_hash = user
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |u| u.password_hash.clone());
    let password = request.password;
    let password_ok = tokio::task::spawn_blocking(move || {
        verify_password(password.expose_secret(), &stored_hash)
    })
    .await
    .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if password_ok => user,
        _ => return Err(ApiError::InvalidCredentials),
    };
    let user_id = UserId::from_stored(user.id.clone());
    let wrapped = user
        .wrapped_key
        .as_deref()
        .ok_or(ApiError::InvalidCredentials)?;
    let key = state
        .keys
        .unwrap(wrapped, &user_id)
        .map_err(ApiError::Internal)?;
    let (token, digest) =
        crate::session_token::issue(&state.region.id).map_err(ApiError::internal)?;
    let now = state.now_ms();
    let expires_at = now + i64::from(state.policies.retention.sessions_days) * 86_400_000;
    let session_id = uuid::Uuid::new_v4().to_string();
    let device_sealed = key
        .seal(
            &aad("sessions", &user_id, &session_id, "device"),
            request.device_name.as_bytes(),
        )
        .map_err(ApiError::internal)?;
    state
        .store
        .create_session(
            digest,
            SessionRow {
                id: session_id,
                device_sealed,
                created_at: now,
                expires_at,
            },
            user.id,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SignInResponse {
            token,
            expires_at: rfc3339(expires_at),
        }),
    ))
}
