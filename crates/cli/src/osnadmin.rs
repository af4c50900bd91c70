//! `twill osnadmin`: Fabric's `osnadmin` against an orderer's admin endpoint
//! (the channel participation REST API).
//!
//! Output is Fabric's: `Status: <code>` and the response body as
//! tab-indented JSON. Any HTTP answer, 4xx and 5xx included, exits 0 as
//! Fabric's osnadmin does; failing to reach the orderer (connection, TLS
//! handshake, unreadable files) is a one-line error with exit code 1.
//!
//! With `--ca-file` the endpoint is dialed over TLS and, given
//! `--client-cert` and `--client-key`, presents that client certificate
//! (admin endpoints require one). Without `--ca-file` it speaks plain HTTP,
//! for orderers whose admin endpoint has TLS disabled.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::httpbody::FullBody;
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use hyper::body::Body as _;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use prost::Message;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use twill_comm::{ClientTls, TlsFiles, CONNECT_TIMEOUT, TLS_HANDSHAKE_TIMEOUT};
use twill_protos::common::{Block, ChannelHeader, Envelope, Payload};

const CHANNELS_PATH: &str = "/participation/v1/channels";

/// How long to wait for the whole answer once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `twill osnadmin`.
#[derive(Debug, Args)]
pub struct OsnadminArgs {
    #[command(subcommand)]
    command: OsnadminCommand,
}

#[derive(Debug, Subcommand)]
enum OsnadminCommand {
    /// Channel actions: join, list, remove.
    ///
    /// Example:
    ///   twill osnadmin channel list -o localhost:7053 --ca-file tls/ca.crt \
    ///       --client-cert admin/tls/client.crt --client-key admin/tls/client.key
    #[command(verbatim_doc_comment)]
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
}

/// Where the admin endpoint is and how to authenticate to it.
#[derive(Debug, Args)]
struct Connection {
    /// Admin endpoint of the orderer (Admin.ListenAddress).
    #[arg(short = 'o', long, value_name = "HOST:PORT")]
    orderer_address: String,
    /// PEM file with the TLS CA certificate(s) of the orderer; without it,
    /// plain HTTP is used.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// PEM file with the client TLS certificate for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM file with the private key of the client TLS certificate.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Print only the response body, without the `Status: ...` line.
    #[arg(long)]
    no_status: bool,
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Join the orderer to a channel, creating it from a config block.
    ///
    /// Example:
    ///   twill osnadmin channel join --channel-id mychannel --config-block mychannel.block \
    ///       -o localhost:7053 --ca-file tls/ca.crt \
    ///       --client-cert admin/tls/client.crt --client-key admin/tls/client.key
    #[command(verbatim_doc_comment)]
    Join {
        /// Channel the block belongs to (checked against the block).
        #[arg(short = 'c', long, alias = "channelID", value_name = "NAME")]
        channel_id: String,
        /// File with the channel's genesis block or a recent config block.
        #[arg(short = 'b', long, value_name = "FILE")]
        config_block: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// List the orderer's channels, or show one channel in detail.
    ///
    /// Examples:
    ///   twill osnadmin channel list -o localhost:7053 --ca-file tls/ca.crt \
    ///       --client-cert admin/tls/client.crt --client-key admin/tls/client.key
    ///   twill osnadmin channel list --channel-id mychannel -o localhost:7053 ...
    #[command(verbatim_doc_comment)]
    List {
        /// Show this channel in detail (status, consensus relation, height).
        #[arg(short = 'c', long, alias = "channelID", value_name = "NAME")]
        channel_id: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove the orderer from a channel and delete its ledger there.
    ///
    /// Example:
    ///   twill osnadmin channel remove --channel-id mychannel -o localhost:7053 \
    ///       --ca-file tls/ca.crt --client-cert admin/tls/client.crt --client-key admin/tls/client.key
    #[command(verbatim_doc_comment)]
    Remove {
        /// The channel to leave.
        #[arg(short = 'c', long, alias = "channelID", value_name = "NAME")]
        channel_id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Runs `twill osnadmin`.
pub fn run(args: OsnadminArgs) -> anyhow::Result<()> {
    let OsnadminCommand::Channel { command } = args.command;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (conn, status, body) = runtime.block_on(channel(command))?;
    print!("{}", render(&conn, status, &body));
    Ok(())
}

async fn channel(command: ChannelCommand) -> anyhow::Result<(Connection, u16, Vec<u8>)> {
    match command {
        ChannelCommand::Join {
            channel_id,
            config_block,
            conn,
        } => {
            let block = read_file(&config_block, "config block")?;
            check_block_channel(&block, &channel_id, &config_block)?;
            let (content_type, body) = join_form(&block);
            let client = AdminClient::new(&conn)?;
            let (status, body) = client
                .request(Method::POST, CHANNELS_PATH, Some(content_type), body)
                .await?;
            Ok((conn, status, body))
        }
        ChannelCommand::List { channel_id, conn } => {
            let path = match &channel_id {
                Some(id) => format!("{CHANNELS_PATH}/{id}"),
                None => CHANNELS_PATH.to_string(),
            };
            let client = AdminClient::new(&conn)?;
            let (status, body) = client.request(Method::GET, &path, None, Vec::new()).await?;
            Ok((conn, status, body))
        }
        ChannelCommand::Remove { channel_id, conn } => {
            let client = AdminClient::new(&conn)?;
            let path = format!("{CHANNELS_PATH}/{channel_id}");
            let (status, body) = client
                .request(Method::DELETE, &path, None, Vec::new())
                .await?;
            Ok((conn, status, body))
        }
    }
}

/// `Status: <code>` and the body indented with tabs, as Fabric's osnadmin
/// prints them; a body that is not JSON is printed as it is.
fn render(conn: &Connection, status: u16, body: &[u8]) -> String {
    let mut out = String::new();
    if !conn.no_status {
        out.push_str(&format!("Status: {status}\n"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return out;
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => {
            let mut buf = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
            if serde::Serialize::serialize(&value, &mut ser).is_ok() {
                out.push_str(&String::from_utf8_lossy(&buf));
            } else {
                out.push_str(&String::from_utf8_lossy(body));
            }
        }
        Err(_) => out.push_str(String::from_utf8_lossy(body).trim_end()),
    }
    out.push('\n');
    out
}

fn read_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Fabric's sanity check that the admin joins the channel they think.
fn check_block_channel(bytes: &[u8], channel_id: &str, path: &Path) -> anyhow::Result<()> {
    let block =
        Block::decode(bytes).with_context(|| format!("{} is not a block", path.display()))?;
    let block_channel = block_channel_id(&block).map_err(|e| {
        anyhow!(
            "{}: cannot find the block's channel ID: {e}",
            path.display()
        )
    })?;
    if block_channel != channel_id {
        bail!(
            "specified --channel-id {channel_id} does not match channel ID {block_channel} in config block {}",
            path.display()
        );
    }
    Ok(())
}

fn block_channel_id(block: &Block) -> Result<String, String> {
    let first = block
        .data
        .as_ref()
        .and_then(|d| d.data.first())
        .ok_or("the block holds no envelope")?;
    let envelope = Envelope::decode(first.as_slice()).map_err(|e| format!("envelope: {e}"))?;
    let payload =
        Payload::decode(envelope.payload.as_slice()).map_err(|e| format!("payload: {e}"))?;
    let header = payload.header.ok_or("the payload has no header")?;
    let channel_header = ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| format!("channel header: {e}"))?;
    Ok(channel_header.channel_id)
}

/// The multipart/form-data body Fabric's osnadmin sends: one file part
/// `config-block` named `config.block`. Returns the content type and body.
fn join_form(block: &[u8]) -> (String, Vec<u8>) {
    let boundary = pick_boundary(block, fnv1a(block));
    let mut body = Vec::with_capacity(block.len() + 256);
    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    body.extend_from_slice(
        b"Content-Disposition: form-data; name=\"config-block\"; filename=\"config.block\"\r\n",
    );
    body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
    body.extend_from_slice(block);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn fnv1a(content: &[u8]) -> u64 {
    content.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A boundary that does not occur in `content`, starting from `seed`.
fn pick_boundary(content: &[u8], mut seed: u64) -> String {
    loop {
        let boundary = format!("twill-osnadmin-{seed:016x}");
        if !content
            .windows(boundary.len())
            .any(|w| w == boundary.as_bytes())
        {
            return boundary;
        }
        seed = seed.wrapping_add(1);
    }
}

/// A one-shot HTTP/1.1 client for the admin endpoint.
struct AdminClient {
    address: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl AdminClient {
    fn new(conn: &Connection) -> anyhow::Result<Self> {
        let address = conn.orderer_address.clone();
        let Some(ca_file) = &conn.ca_file else {
            if conn.client_cert.is_some() {
                bail!("--client-cert and --client-key need --ca-file (mutual TLS)");
            }
            return Ok(AdminClient { address, tls: None });
        };
        // twill-comm's errors already name the file and carry their cause;
        // flatten them so the cause is not printed twice.
        let flat = |e: twill_comm::CommError| anyhow!("{e}");
        let tls = match (&conn.client_cert, &conn.client_key) {
            (Some(cert), Some(key)) => ClientTls::from_files(&TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                root_cas: vec![ca_file.clone()],
            })
            .map_err(flat)?,
            _ => ClientTls::from_root_files(std::slice::from_ref(ca_file)).map_err(flat)?,
        };
        let mut config = Arc::unwrap_or_clone(tls.rustls_config().map_err(flat)?);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let host = host_of(&address)?;
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| anyhow!("invalid host in --orderer-address {address}"))?;
        Ok(AdminClient {
            address,
            tls: Some((Arc::new(config), server_name)),
        })
    }

    /// Sends one request and returns the status code and body.
    async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<String>,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let address = &self.address;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| anyhow!("timed out"))
            .and_then(|r| r.map_err(anyhow::Error::from))
            .with_context(|| format!("cannot connect to orderer admin endpoint {address}"))?;
        match &self.tls {
            None => self.exchange(tcp, method, path, content_type, body).await,
            Some((config, server_name)) => {
                let connector = TlsConnector::from(config.clone());
                let tls = tokio::time::timeout(
                    TLS_HANDSHAKE_TIMEOUT,
                    connector.connect(server_name.clone(), tcp),
                )
                .await
                .map_err(|_| anyhow!("timed out"))
                .and_then(|r| r.map_err(anyhow::Error::from))
                .with_context(|| {
                    format!("TLS handshake with orderer admin endpoint {address} failed")
                })?;
                self.exchange(tls, method, path, content_type, body).await
            }
        }
    }

    async fn exchange<S>(
        &self,
        stream: S,
        method: Method,
        path: &str,
        content_type: Option<String>,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let address = &self.address;
        let work = async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let driver = tokio::spawn(connection);
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, address.as_str())
                .header(hyper::header::ACCEPT, "application/json");
            if let Some(ct) = content_type {
                request = request.header(hyper::header::CONTENT_TYPE, ct);
            }
            let request = request.body(FullBody::new(body))?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let mut incoming = response.into_body();
            let mut out = Vec::new();
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)).await
            {
                if let Ok(data) = frame?.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            driver.abort();
            anyhow::Ok((status, out))
        };
        let result = tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| anyhow!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
            .and_then(|r| r);
        result.map_err(|e| {
            // With TLS 1.3 the server checks the client certificate after the
            // handshake, so a refused certificate surfaces here as an alert.
            let hint = if format!("{e:#}").contains("fatal alert") {
                " (the orderer refused the TLS client certificate; admin endpoints \
                 require one issued by a CA in their clientRootCAs)"
            } else {
                ""
            };
            e.context(format!(
                "request to orderer admin endpoint {address} failed{hint}"
            ))
        })
    }
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(address: &str) -> anyhow::Result<&str> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--orderer-address {address} is not host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        bail!("--orderer-address {address} is not host:port");
    }
    Ok(host.trim_start_matches('[').trim_end_matches(']'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("localhost:7053").unwrap(), "localhost");
        assert_eq!(host_of("[::1]:7053").unwrap(), "::1");
        assert!(host_of("localhost").is_err());
        assert!(host_of(":7053").is_err());
    }

    #[test]
    fn boundary_avoids_the_content() {
        let taken = pick_boundary(b"", 5);
        let content = format!("xx{taken}yy");
        let boundary = pick_boundary(content.as_bytes(), 5);
        assert_ne!(boundary, taken);
        assert!(!content.contains(&boundary));
    }

    #[test]
    fn output_is_tab_indented_like_fabric() {
        let conn = Connection {
            orderer_address: "x:1".into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            no_status: false,
        };
        let out = render(&conn, 201, b"{\"name\":\"c\",\"height\":1}\n");
        assert_eq!(
            out,
            "Status: 201\n{\n\t\"name\": \"c\",\n\t\"height\": 1\n}\n"
        );
        assert_eq!(render(&conn, 204, b""), "Status: 204\n");
    }
}
