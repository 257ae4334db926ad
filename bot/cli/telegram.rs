//! The operator's Telegram commands: `carebot telegram set-webhook|delete-webhook|status`,
//! `carebot invite PHONE` and `carebot prefer PHONE CHANNEL`. Each is a library function so
//! the tests can run it against the fake Bot API.

use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::Rng;

use std::process::ExitCode;

use super::{Cli, InviteArgs, PreferArgs, TelegramCommand};
use crate::channel::telegram::TelegramClient;
use crate::config::Config;
use crate::domain::{Channel, Phone};
use crate::model::Invitee;
use crate::runner::telegram_invite_hash;
use crate::store::{AnyStore, Store};

/// The path Telegram posts updates to.
pub const WEBHOOK_PATH: &str = "/webhooks/telegram";

/// The Bot API client for the configured bot, or a clear refusal.
pub fn client(config: &Config) -> anyhow::Result<TelegramClient> {
    let Some(token) = &config.telegram_bot_token else {
        bail!("TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather and set its token");
    };
    TelegramClient::new(token, &config.telegram_api_url, Duration::from_secs(15))
}

/// Registers `CAREBOT_PUBLIC_URL/webhooks/telegram` with `TELEGRAM_WEBHOOK_SECRET`; returns the
/// URL. Idempotent: every instance of a deployment may run it.
pub async fn set_webhook(config: &Config) -> anyhow::Result<String> {
    let client = client(config)?;
    let Some(public_url) = &config.public_url else {
        bail!(
            "CAREBOT_PUBLIC_URL is not set: Telegram needs the HTTPS address it can reach carebot at"
        );
    };
    let Some(secret) = &config.telegram_webhook_secret else {
        bail!(
            "TELEGRAM_WEBHOOK_SECRET is not set: choose one (1-256 of A-Z, a-z, 0-9, _ and -) so carebot can tell Telegram's requests from anyone else's"
        );
    };
    let url = format!("{public_url}{WEBHOOK_PATH}");
    client
        .set_webhook(&url, secret.expose())
        .await
        .map_err(|e| anyhow::anyhow!("Telegram refused the webhook: {e}"))?;
    Ok(url)
}

/// Removes the webhook, so that a carebot without `CAREBOT_PUBLIC_URL` can poll instead.
pub async fn delete_webhook(config: &Config) -> anyhow::Result<()> {
    client(config)?
        .delete_webhook()
        .await
        .map_err(|e| anyhow::anyhow!("Telegram refused: {e}"))
}

/// The bot's username and where its updates go.
pub async fn status(config: &Config) -> anyhow::Result<String> {
    let client = client(config)?;
    let username = client
        .username()
        .await
        .map_err(|e| anyhow::anyhow!("getMe failed: {e}"))?;
    let url = client
        .webhook_url()
        .await
        .map_err(|e| anyhow::anyhow!("getWebhookInfo failed: {e}"))?;
    let mode = if url.is_empty() {
        "no webhook: `carebot serve` without CAREBOT_PUBLIC_URL polls for updates".to_owned()
    } else {
        format!("webhook: {url}")
    };
    Ok(format!("bot @{username} (https://t.me/{username})\n{mode}"))
}

/// A one-time invite link, made by [`invite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub url: String,
    pub invitee: Invitee,
    pub expires_at: DateTime<Utc>,
}

/// Makes a one-time link (`https://t.me/<bot>?start=<code>`) that links the chat opening it
/// to the caregiver, or else the supervisor, with `phone`. Only the code's hash is stored.
pub async fn invite(
    store: &AnyStore,
    client: &TelegramClient,
    phone: &str,
    valid_for: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<Invite> {
    let phone = Phone::parse(phone).map_err(|e| anyhow::anyhow!("{phone:?}: {e}"))?;
    let username = client
        .username()
        .await
        .map_err(|e| anyhow::anyhow!("cannot ask Telegram for the bot's username: {e}"))?;
    // 128 random bits, in the characters a t.me start parameter allows (A-Z a-z 0-9 _ -).
    let code =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::rng().random::<[u8; 16]>());
    let expires_at = now + chrono::Duration::from_std(valid_for)?;
    let invitee = store
        .create_invite(
            phone.as_str(),
            Channel::Telegram,
            &telegram_invite_hash(&code),
            expires_at,
        )
        .await?
        .with_context(|| {
            format!(
                "no active caregiver or supervisor has the phone number {}",
                phone.masked()
            )
        })?;
    Ok(Invite {
        url: format!("https://t.me/{username}?start={code}"),
        invitee,
        expires_at,
    })
}

/// Sets which channel a caregiver reachable on both gets program messages on (`None`: the one
/// they last wrote on).
pub async fn prefer(store: &AnyStore, phone: &str, channel: Option<Channel>) -> anyhow::Result<()> {
    let phone = Phone::parse(phone).map_err(|e| anyhow::anyhow!("{phone:?}: {e}"))?;
    if !store.set_preferred_channel(phone.as_str(), channel).await? {
        bail!("no caregiver has the phone number {}", phone.masked());
    }
    Ok(())
}

/// `carebot telegram set-webhook|delete-webhook|status`.
pub(super) async fn run(cli: &Cli, cmd: &TelegramCommand) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    match cmd {
        TelegramCommand::SetWebhook => {
            let url = set_webhook(&config).await?;
            println!("Telegram will post updates to {url}");
        }
        TelegramCommand::DeleteWebhook => {
            delete_webhook(&config).await?;
            println!(
                "webhook removed: `carebot serve` without CAREBOT_PUBLIC_URL polls for updates"
            );
        }
        TelegramCommand::Status => println!("{}", status(&config).await?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `carebot invite PHONE`: a one-time Telegram link for a caregiver or a supervisor.
pub(super) async fn run_invite(cli: &Cli, args: &InviteArgs) -> anyhow::Result<ExitCode> {
    let config = cli.config()?;
    let valid_for =
        crate::flow::definition::parse_duration(&args.valid_for).map_err(anyhow::Error::msg)?;
    let client = client(&config)?;
    let store = cli.store(&config).await?;
    let invite = invite(&store, &client, &args.phone, valid_for, Utc::now()).await?;
    let who = match &invite.invitee {
        crate::model::Invitee::Caregiver { external_id, name } => {
            format!("caregiver {external_id} ({name})")
        }
        crate::model::Invitee::Supervisor { external_id, name } => {
            format!("supervisor {external_id} ({name})")
        }
    };
    println!(
        "one-time link for {who}, valid until {} UTC:",
        invite.expires_at.format("%Y-%m-%d %H:%M")
    );
    println!("{}", invite.url);
    Ok(ExitCode::SUCCESS)
}

/// `carebot prefer PHONE sms|telegram|last`.
pub(super) async fn run_prefer(cli: &Cli, args: &PreferArgs) -> anyhow::Result<ExitCode> {
    let channel = match args.channel.to_lowercase().as_str() {
        "sms" => Some(Channel::Sms),
        "telegram" => Some(Channel::Telegram),
        "last" | "auto" => None,
        other => bail!("channel {other:?} must be sms, telegram or last"),
    };
    let config = cli.config()?;
    let store = cli.store(&config).await?;
    prefer(&store, &args.phone, channel).await?;
    println!(
        "program messages to {} go by {}",
        args.phone,
        channel.map_or("the channel they last wrote on", |c| match c {
            Channel::Telegram => "Telegram when it is open",
            _ => "SMS when it is open",
        })
    );
    Ok(ExitCode::SUCCESS)
}
