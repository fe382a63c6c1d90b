//! `GET /ui`: a status page for operators, rendered on the server (no scripts; the page
//! reloads itself every 2 s). It shows a health banner and each member's state (the same
//! [`QuorumHealth`] as `/v1/quorum/health`), the quorum as this node sees it (the same
//! [`QuorumStatus`] as `/v1/quorum/status`), this node's version, uptime and latest
//! checkpoint, the brokers and the topics.
//!
//! The page is a maud template over typed data: every string is escaped by the template
//! engine. Only the leader knows each member's state: a follower asks it, and says so; if
//! the leader cannot be asked, the page says that instead. A member is marked behind only
//! when it has not held the leader's whole log lately, so the lag of 1 that the idle
//! leader's NoOp causes for a moment is no warning.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Html;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use openraft::async_runtime::WatchReceiver;

use crate::contract::brokers::BrokerView;
use crate::contract::quorum::{HealthStatus, QuorumHealth, QuorumStatus};
use crate::node::handle::Node;

/// Topics listed at most (problem topics first); the rest are counted.
const MAX_TOPICS: usize = 500;

/// One line of the topic table.
struct TopicRow {
    name: String,
    partitions: usize,
    offline: usize,
    under_replicated: usize,
}

impl TopicRow {
    fn class(&self) -> Option<&'static str> {
        if self.offline > 0 {
            Some("offline")
        } else if self.under_replicated > 0 {
            Some("under-replicated")
        } else {
            None
        }
    }
}

/// The latest checkpoint of this node: its file name and age.
struct Checkpoint {
    file_name: String,
    age: Option<Duration>,
}

/// Everything the page shows, gathered before rendering.
struct Page {
    node_id: u64,
    role: String,
    status: QuorumStatus,
    /// The leader's verdict on every member (asked of it when this node does not lead).
    health: QuorumHealth,
    /// `http` or `https`: how the links to the other nodes' pages are made.
    scheme: &'static str,
    version: &'static str,
    uptime: Duration,
    checkpoint: Option<Checkpoint>,
    /// When the page was rendered, UTC.
    data_as_of: String,
    brokers: Vec<BrokerView>,
    topics: Vec<TopicRow>,
}

/// The page.
pub async fn page(State(node): State<Arc<Node>>, headers: HeaderMap) -> Html<String> {
    let status = super::quorum::quorum_status(&node).await;
    let health = super::quorum::health_of(&node, &headers).await;
    let role = format!("{:?}", node.raft().metrics().borrow_watched().state);
    let (brokers, mut topics, checkpoint) = {
        let st = node.sm().read();
        let checkpoint = st.current.as_ref().map(|c| Checkpoint {
            file_name: c.id.file_name(),
            age: std::fs::metadata(&c.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok()),
        });
        let brokers: Vec<BrokerView> = st.image.brokers().map(BrokerView::of).collect();
        let topics: Vec<TopicRow> = st
            .image
            .topics()
            .map(|t| TopicRow {
                name: t.name().to_string(),
                partitions: t.partition_count(),
                offline: t.partitions().iter().filter(|p| !p.has_leader()).count(),
                under_replicated: t
                    .partitions()
                    .iter()
                    .filter(|p| p.isr().len() < p.replicas().len())
                    .count(),
            })
            .collect();
        (brokers, topics, checkpoint)
    };
    topics.sort_by(|a, b| {
        (b.offline, b.under_replicated, &a.name).cmp(&(a.offline, a.under_replicated, &b.name))
    });
    let page = Page {
        node_id: node.id(),
        role,
        status,
        health,
        scheme: node.config().scheme(),
        version: env!("CARGO_PKG_VERSION"),
        uptime: crate::telemetry::uptime(),
        checkpoint,
        data_as_of: utc_now(),
        brokers,
        topics,
    };
    Html(render(&page).into_string())
}

/// Now, UTC, to the second: "2026-12-01 23:40:05 UTC".
fn utc_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// "3h 02m 05s", "4m 10s", "12s".
fn span(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

fn render(p: &Page) -> Markup {
    let s = &p.status;
    let h = &p.health;
    let verdict = match h.status {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unavailable => "unavailable",
    };
    html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="2";
                title { "kraftd node " (p.node_id) " - " (verdict) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "kraftd controller quorum" }
                div id="health" class={ "banner " (verdict) } {
                    b { (h.summary) } br;
                    (h.voters_up) " of " (h.voters) " voters up, " (h.voters_caught_up)
                    " caught up; a majority is " (h.majority) "."
                }
                p id="served-by" {
                    "Served by node " b { (p.node_id) } " (" (p.role) "), cluster "
                    (s.cluster_id) ". Refreshes every 2 s."
                }
                p id="data-as-of" { "Data as of " (p.data_as_of) "." }
                h2 { "Quorum" }
                table id="quorum" {
                    tr { th { "Leader" } td id="leader-id" {
                        @match s.leader_id { Some(l) => (l), None => "none" }
                    } }
                    tr { th { "Epoch" } td id="epoch" { (s.leader_epoch) } }
                    tr { th { "High watermark" } td id="high-watermark" { (s.high_watermark) } }
                    tr { th { "Log start offset" } td id="log-start" { (s.log_start_offset) } }
                    tr { th { "Latest checkpoint" } td id="checkpoint" {
                        @match &p.checkpoint {
                            Some(c) => {
                                (c.file_name)
                                @if let Some(age) = c.age { ", written " (span(age)) " ago" }
                            },
                            None => "none yet",
                        }
                    } }
                    tr { th { "This node" } td id="version" {
                        "kraftd " (p.version) ", up " (span(p.uptime))
                    } }
                }
                h2 { "Voters and observers" }
                (member_table(p))
                (broker_table(&p.brokers))
                (topic_table(&p.topics))
            }
        }
    }
}

/// "123 ms ago", or "never".
fn ago(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => format!("{ms} ms ago"),
        None => "never".into(),
    }
}

fn member_table(p: &Page) -> Markup {
    let h = &p.health;
    if h.members.is_empty() {
        return html! {
            p id="replication-source" {
                "Only the leader knows each voter's state, and none could be asked: "
                (h.summary) "."
            }
        };
    }
    let whose = if h.reported_by == p.node_id {
        "this node, the leader".to_string()
    } else {
        format!(
            "the leader, node {}, asked by node {}",
            h.reported_by, p.node_id
        )
    };
    html! {
        p id="replication-source" {
            "As reported by " (whose) ". A member silent for " (h.down_after_ms)
            " ms is down; one that held the leader's whole log within that time is caught up."
        }
        table id="replication" {
            tr {
                th { "Node" } th { "Role" } th { "State" } th { "API" } th { "Log end offset" }
                th { "Lag (records)" } th { "Last heard" } th { "Caught up" }
            }
            @for m in &h.members {
                @let class = if !m.up { Some("down") } else if !m.caught_up { Some("behind") } else { None };
                tr class=[class] data-node=(m.node_id) {
                    td { (m.node_id) }
                    td { (format!("{:?}", m.role)) }
                    td class="state" data-node=(m.node_id) { @if m.up { "up" } @else { "down" } }
                    td {
                        @match &m.api {
                            Some(api) => a href=(format!("{}://{api}/ui", p.scheme)) { (api) },
                            None => "unknown",
                        }
                    }
                    td { (m.log_end_offset) }
                    td class="lag" data-node=(m.node_id) { (m.lag) }
                    td { (ago(m.last_ack_ms_ago)) }
                    td { (ago(m.last_caught_up_ms_ago)) }
                }
            }
        }
    }
}

fn broker_table(brokers: &[BrokerView]) -> Markup {
    let fenced = brokers.iter().filter(|b| b.state == "fenced").count();
    html! {
        h2 { "Brokers" }
        p { (brokers.len()) " registered, " (fenced) " fenced." }
        table id="brokers" {
            tr { th { "Id" } th { "State" } th { "Epoch" } th { "Rack" } th { "Listeners" } }
            @for b in brokers {
                tr class={ "broker " (b.state) } data-broker=(b.id) {
                    td { (b.id) }
                    td { (b.state) }
                    td { (b.epoch) }
                    td { (b.rack.as_deref().unwrap_or("")) }
                    td {
                        @for (i, l) in b.listeners.iter().enumerate() {
                            @if i > 0 { ", " }
                            (l.name) "://" (l.host) ":" (l.port)
                        }
                    }
                }
            }
        }
    }
}

fn topic_table(topics: &[TopicRow]) -> Markup {
    html! {
        h2 { "Topics" }
        p { (topics.len()) " topics." }
        table id="topics" {
            tr { th { "Topic" } th { "Partitions" } th { "Offline" } th { "Under-replicated" } }
            @for t in topics.iter().take(MAX_TOPICS) {
                tr class=[t.class()] {
                    td { (t.name) } td { (t.partitions) } td { (t.offline) }
                    td { (t.under_replicated) }
                }
            }
        }
        @if topics.len() > MAX_TOPICS {
            p { "... and " (topics.len() - MAX_TOPICS) " more topics." }
        }
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f0f0f0}\
tr.fenced td,tr.offline td{background:#f8d0d0;color:#800;font-weight:bold}\
tr.controlled_shutdown td,tr.under-replicated td,tr.behind td{background:#fff2c0}\
tr.down td{background:#f8d0d0;color:#800;font-weight:bold}\
.banner{padding:.6em 1em;margin-bottom:1em;border-radius:4px;border:1px solid}\
.banner.healthy{background:#d8f0d8;border-color:#6a6;color:#040}\
.banner.degraded{background:#fff2c0;border-color:#c90;color:#640}\
.banner.unavailable{background:#f8d0d0;border-color:#c33;color:#800}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::brokers::Listener;
    use crate::contract::quorum::{MemberHealth, ReplicaRole};

    fn page(rack: &str, topic: &str) -> Page {
        Page {
            node_id: 1,
            role: "Leader".into(),
            status: QuorumStatus {
                cluster_id: "<c>".into(),
                node_id: 1,
                leader_id: None,
                leader_epoch: 3,
                high_watermark: 10,
                log_start_offset: 0,
                max_follower_lag: 0,
                max_follower_lag_time_ms: 0,
                voters: vec![],
                observers: vec![],
            },
            health: QuorumHealth {
                status: HealthStatus::Unavailable,
                summary: "unavailable: a <reason>".into(),
                reported_by: 1,
                leader_id: None,
                leader_epoch: 3,
                voters: 3,
                voters_up: 0,
                voters_caught_up: 0,
                majority: 2,
                can_lose: 0,
                down_after_ms: 2000,
                members: vec![],
            },
            scheme: "http",
            version: "0.0.0",
            uptime: Duration::from_secs(3725),
            checkpoint: None,
            data_as_of: "2026-12-01 00:00:00 UTC".into(),
            brokers: vec![BrokerView {
                id: 2,
                epoch: 7,
                incarnation_id: "x".into(),
                state: "fenced".into(),
                listeners: vec![Listener {
                    name: "PLAINTEXT".into(),
                    host: "h&".into(),
                    port: 9092,
                    security_protocol: "PLAINTEXT".into(),
                }],
                rack: Some(rack.into()),
            }],
            topics: vec![TopicRow {
                name: topic.into(),
                partitions: 1,
                offline: 1,
                under_replicated: 0,
            }],
        }
    }

    fn member(id: u64, up: bool, caught_up: bool, lag: i64) -> MemberHealth {
        MemberHealth {
            node_id: id,
            role: ReplicaRole::Follower,
            up,
            caught_up,
            log_end_offset: 1000 - lag,
            lag,
            last_ack_ms_ago: Some(if up { 40 } else { 9000 }),
            last_caught_up_ms_ago: Some(40),
            api: Some(format!("10.0.0.{id}:9093")),
        }
    }

    #[test]
    fn a_stopped_voter_shows_down_and_the_idle_noop_lag_is_no_warning() {
        let mut p = page("r", "t");
        p.health.status = HealthStatus::Degraded;
        p.health.summary = "degraded (down: 3), can lose 0".into();
        p.health.members = vec![
            // Caught up a moment ago, one NoOp behind now: no warning.
            member(2, true, true, 1),
            // Stopped with everything replicated: lag 0, yet down.
            member(3, false, false, 0),
            member(4, true, false, 900),
        ];
        let html = render(&p).into_string();
        assert!(
            html.contains(
                r#"<div id="health" class="banner degraded"><b>degraded (down: 3), can lose 0</b>"#
            ),
            "{html}"
        );
        assert!(html.contains(r#"<tr data-node="2"><td>2</td>"#), "{html}");
        assert!(html.contains(r#"<tr class="down" data-node="3"><td>3</td><td>Follower</td><td class="state" data-node="3">down</td>"#), "{html}");
        assert!(
            html.contains(r#"<tr class="behind" data-node="4">"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="http://10.0.0.3:9093/ui">10.0.0.3:9093</a>"#),
            "{html}"
        );
        assert!(html.contains("kraftd 0.0.0, up 1h 02m 05s"), "{html}");
        assert!(
            html.contains("Data as of 2026-12-01 00:00:00 UTC."),
            "{html}"
        );
    }

    #[test]
    fn every_string_from_outside_reaches_the_page_escaped() {
        let html = render(&page(r#"<a href="x">'&'</a>"#, "<script>")).into_string();
        assert!(
            html.contains("<td>&lt;a href=&quot;x&quot;&gt;'&amp;'&lt;/a&gt;</td>"),
            "{html}"
        );
        assert!(html.contains("<td>&lt;script&gt;</td>"), "{html}");
        assert!(html.contains("cluster &lt;c&gt;."), "{html}");
        assert!(html.contains("PLAINTEXT://h&amp;:9092"), "{html}");
        assert!(html.contains("a &lt;reason&gt;."), "{html}");
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn rows_carry_the_classes_the_page_colours_by() {
        let html = render(&page("r", "t")).into_string();
        assert!(
            html.contains(r#"<tr class="broker fenced" data-broker="2"><td>2</td><td>fenced</td>"#),
            "{html}"
        );
        assert!(html.contains(r#"<tr class="offline"><td>t</td>"#), "{html}");
        assert!(html.contains(r#"<td id="leader-id">none</td>"#), "{html}");
    }
}
