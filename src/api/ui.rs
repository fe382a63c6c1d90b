//! `GET /ui`: a status page for operators, rendered on the server (no scripts; the page
//! reloads itself every 2 s). It shows the quorum as this node sees it (the same
//! [`QuorumStatus`] and [`Replica`] rows as `/v1/quorum/status` and
//! `/v1/quorum/replication`), the brokers and the topics.
//!
//! The page is a maud template over typed data: every string is escaped by the template
//! engine. Replication is only known by the leader: a follower asks it, and says so; if the
//! leader cannot be asked, the page says that instead.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Html;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use openraft::async_runtime::WatchReceiver;

use crate::contract::brokers::BrokerView;
use crate::contract::quorum::{QuorumStatus, Replica};
use crate::node::handle::{now_ms, Node};

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

/// Where the replication table comes from.
enum Replication {
    /// Rows, and the node that reported them.
    Known(Vec<Replica>, u64),
    /// Why there are none.
    Unknown(String),
}

/// Everything the page shows, gathered before rendering.
struct Page {
    node_id: u64,
    role: String,
    status: QuorumStatus,
    replication: Replication,
    brokers: Vec<BrokerView>,
    topics: Vec<TopicRow>,
    now_ms: u64,
}

/// The replication rows: this node's, or the leader's, asked with the caller's own
/// credentials (`authorization`), which the leader checks again.
async fn replication(node: &Node, authorization: Option<&HeaderValue>) -> Replication {
    if node.is_leader() {
        return Replication::Known(super::quorum::replication_rows(node), node.id());
    }
    let Some(leader) = node.leader() else {
        return Replication::Unknown("no leader is known, and only the leader knows".into());
    };
    let Some(addr) = node.api_addr_of(leader).await else {
        return Replication::Unknown(format!("the API address of leader {leader} is unknown"));
    };
    let http = node.http();
    let mut ask = http
        .client()
        .get(http.url(&addr, "/v1/quorum/replication"))
        .timeout(Duration::from_secs(1));
    if let Some(a) = authorization {
        ask = ask.header(header::AUTHORIZATION, a);
    }
    let ask = ask.send().await;
    match ask {
        Ok(r) if r.status().is_success() => match r.json::<Vec<Replica>>().await {
            Ok(rows) => Replication::Known(rows, leader),
            Err(e) => Replication::Unknown(format!("leader {leader} answered: {e}")),
        },
        Ok(r) => Replication::Unknown(format!("leader {leader} answered {}", r.status())),
        Err(e) => Replication::Unknown(format!("cannot ask leader {leader}: {e}")),
    }
}

/// The page.
pub async fn page(State(node): State<Arc<Node>>, headers: HeaderMap) -> Html<String> {
    let status = super::quorum::quorum_status(&node).await;
    let replication = replication(&node, headers.get(header::AUTHORIZATION)).await;
    let role = format!("{:?}", node.raft().metrics().borrow_watched().state);
    let (brokers, mut topics) = {
        let st = node.sm().read();
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
        (brokers, topics)
    };
    topics.sort_by(|a, b| {
        (b.offline, b.under_replicated, &a.name).cmp(&(a.offline, a.under_replicated, &b.name))
    });
    let page = Page {
        node_id: node.id(),
        role,
        status,
        replication,
        brokers,
        topics,
        now_ms: now_ms(),
    };
    Html(render(&page).into_string())
}

fn render(p: &Page) -> Markup {
    let s = &p.status;
    html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="2";
                title { "kraftd node " (p.node_id) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "kraftd controller quorum" }
                p id="served-by" {
                    "Served by node " b { (p.node_id) } " (" (p.role) "), cluster "
                    (s.cluster_id) ". Refreshes every 2 s."
                }
                h2 { "Quorum" }
                table id="quorum" {
                    tr { th { "Leader" } td id="leader-id" {
                        @match s.leader_id { Some(l) => (l), None => "none" }
                    } }
                    tr { th { "Epoch" } td id="epoch" { (s.leader_epoch) } }
                    tr { th { "High watermark" } td id="high-watermark" { (s.high_watermark) } }
                    tr { th { "Log start offset" } td id="log-start" { (s.log_start_offset) } }
                }
                h2 { "Replication" }
                (replication_table(p))
                (broker_table(&p.brokers))
                (topic_table(&p.topics))
            }
        }
    }
}

fn replication_table(p: &Page) -> Markup {
    match &p.replication {
        Replication::Known(rows, from) => {
            let whose = if *from == p.node_id {
                "this node, the leader".to_string()
            } else {
                format!("the leader, node {from}, asked by node {}", p.node_id)
            };
            html! {
                p id="replication-source" { "As reported by " (whose) "." }
                table id="replication" {
                    tr {
                        th { "Node" } th { "Role" } th { "Log end offset" }
                        th { "Lag (records)" } th { "Caught up" }
                    }
                    @for r in rows {
                        tr class=[(r.lag > 0).then_some("behind")] {
                            td { (r.node_id) }
                            td { (format!("{:?}", r.status)) }
                            td { (r.log_end_offset) }
                            td class="lag" data-node=(r.node_id) { (r.lag) }
                            td {
                                @if r.last_caught_up_timestamp <= 0 {
                                    "never"
                                } @else {
                                    (p.now_ms.saturating_sub(r.last_caught_up_timestamp as u64))
                                    " ms ago"
                                }
                            }
                        }
                    }
                }
            }
        }
        Replication::Unknown(why) => html! {
            p id="replication-source" { "Replication is known only by the leader: " (why) "." }
        },
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
tr.controlled_shutdown td,tr.under-replicated td,tr.behind td{background:#fff2c0}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::brokers::Listener;

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
            replication: Replication::Unknown("a <reason>".into()),
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
            now_ms: 0,
        }
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
