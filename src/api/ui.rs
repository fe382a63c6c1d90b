//! `GET /ui`: a status page for operators, rendered on the server (no scripts; the page
//! reloads itself every 2 s). It shows the quorum as this node sees it (the same data as
//! `/v1/quorum/status` and `/v1/quorum/replication`), the brokers and the topics.
//!
//! Replication is only known by the leader: a follower asks it, and says so; if the leader
//! cannot be asked, the page says that instead. Every string from outside goes through
//! [`esc`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use openraft::async_runtime::WatchReceiver;
use serde_json::Value;

use super::brokers::BrokerView;
use crate::node::server::{now_ms, Node};

/// HTML-escapes `s` (text and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Topics listed at most (problem topics first); the rest are counted.
const MAX_TOPICS: usize = 500;

struct TopicRow {
    name: String,
    partitions: usize,
    offline: usize,
    under_replicated: usize,
}

/// Where the replication table comes from.
enum Replication {
    /// Rows, and the node that reported them.
    Known(Vec<Value>, u64),
    /// Why there are none.
    Unknown(String),
}

async fn replication(node: &Node) -> Replication {
    if node.is_leader() {
        return Replication::Known(super::quorum::replication_rows(node), node.id());
    }
    let Some(leader) = node.leader() else {
        return Replication::Unknown("no leader is known, and only the leader knows".into());
    };
    let Some(addr) = node.api_addr_of(leader).await else {
        return Replication::Unknown(format!("the API address of leader {leader} is unknown"));
    };
    let ask = node
        .http
        .get(format!("http://{addr}/v1/quorum/replication"))
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    match ask {
        Ok(r) if r.status().is_success() => match r.json::<Vec<Value>>().await {
            Ok(rows) => Replication::Known(rows, leader),
            Err(e) => Replication::Unknown(format!("leader {leader} answered: {e}")),
        },
        Ok(r) => Replication::Unknown(format!("leader {leader} answered {}", r.status())),
        Err(e) => Replication::Unknown(format!("cannot ask leader {leader}: {e}")),
    }
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => esc(s),
        v => esc(&v.to_string()),
    }
}

/// The page.
pub async fn page(State(node): State<Arc<Node>>) -> Html<String> {
    let status = super::quorum::status_json(&node).await;
    let repl = replication(&node).await;
    let role = format!("{:?}", node.raft.metrics().borrow_watched().state);
    let (brokers, mut topics) = {
        let st = node.sm.read();
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

    let mut h = String::with_capacity(8192);
    h.push_str(&format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"2\">\
         <title>kraftd node {id}</title>\n<style>{STYLE}</style></head><body>\n\
         <h1>kraftd controller quorum</h1>\n\
         <p id=\"served-by\">Served by node <b>{id}</b> ({role}), cluster {cluster}. \
         Refreshes every 2 s.</p>\n",
        id = node.id(),
        role = esc(&role),
        cluster = num(&status["cluster_id"]),
    ));

    h.push_str("<h2>Quorum</h2>\n<table id=\"quorum\">\n");
    for (label, id, key) in [
        ("Leader", "leader-id", "leader_id"),
        ("Epoch", "epoch", "leader_epoch"),
        ("High watermark", "high-watermark", "high_watermark"),
        ("Log start offset", "log-start", "log_start_offset"),
    ] {
        h.push_str(&format!(
            "<tr><th>{label}</th><td id=\"{id}\">{}</td></tr>\n",
            num(&status[key])
        ));
    }
    h.push_str("</table>\n");

    h.push_str("<h2>Replication</h2>\n");
    match repl {
        Replication::Known(rows, from) => {
            let whose = if from == node.id() {
                "this node, the leader".to_string()
            } else {
                format!("the leader, node {from}, asked by node {}", node.id())
            };
            h.push_str(&format!(
                "<p id=\"replication-source\">As reported by {}.</p>\n\
                 <table id=\"replication\"><tr><th>Node</th><th>Role</th>\
                 <th>Log end offset</th><th>Lag (records)</th><th>Caught up</th></tr>\n",
                esc(&whose)
            ));
            let now = now_ms();
            for r in &rows {
                let lag = r["lag"].as_u64().unwrap_or(0);
                let caught_up = match r["last_caught_up_timestamp"].as_u64() {
                    Some(0) | None => "never".to_string(),
                    Some(t) => format!("{} ms ago", now.saturating_sub(t)),
                };
                h.push_str(&format!(
                    "<tr class=\"{cls}\"><td>{id}</td><td>{role}</td><td>{end}</td>\
                     <td class=\"lag\" data-node=\"{id}\">{lag}</td><td>{caught_up}</td></tr>\n",
                    cls = if lag > 0 { "behind" } else { "" },
                    id = num(&r["node_id"]),
                    role = num(&r["status"]),
                    end = num(&r["log_end_offset"]),
                ));
            }
            h.push_str("</table>\n");
        }
        Replication::Unknown(why) => h.push_str(&format!(
            "<p id=\"replication-source\">Replication is known only by the leader: {}.</p>\n",
            esc(&why)
        )),
    }

    let fenced = brokers.iter().filter(|b| b.state == "fenced").count();
    h.push_str(&format!(
        "<h2>Brokers</h2>\n<p>{} registered, {fenced} fenced.</p>\n\
         <table id=\"brokers\"><tr><th>Id</th><th>State</th><th>Epoch</th><th>Rack</th>\
         <th>Listeners</th></tr>\n",
        brokers.len()
    ));
    for b in &brokers {
        let listeners: Vec<String> = b
            .listeners
            .iter()
            .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
            .collect();
        h.push_str(&format!(
            "<tr class=\"broker {state}\" data-broker=\"{id}\"><td>{id}</td><td>{state}</td>\
             <td>{epoch}</td><td>{rack}</td><td>{listeners}</td></tr>\n",
            state = esc(&b.state),
            id = b.id,
            epoch = b.epoch,
            rack = esc(b.rack.as_deref().unwrap_or("")),
            listeners = esc(&listeners.join(", ")),
        ));
    }
    h.push_str("</table>\n");

    h.push_str(&format!(
        "<h2>Topics</h2>\n<p>{} topics.</p>\n<table id=\"topics\"><tr><th>Topic</th>\
         <th>Partitions</th><th>Offline</th><th>Under-replicated</th></tr>\n",
        topics.len()
    ));
    for t in topics.iter().take(MAX_TOPICS) {
        h.push_str(&format!(
            "<tr class=\"{cls}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            t.partitions,
            t.offline,
            t.under_replicated,
            cls = if t.offline > 0 {
                "offline"
            } else if t.under_replicated > 0 {
                "under-replicated"
            } else {
                ""
            },
            name = esc(&t.name),
        ));
    }
    h.push_str("</table>\n");
    if topics.len() > MAX_TOPICS {
        h.push_str(&format!(
            "<p>... and {} more topics.</p>\n",
            topics.len() - MAX_TOPICS
        ));
    }
    h.push_str("</body></html>\n");
    Html(h)
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f0f0f0}\
tr.fenced td,tr.offline td{background:#f8d0d0;color:#800;font-weight:bold}\
tr.controlled_shutdown td,tr.under-replicated td,tr.behind td{background:#fff2c0}";

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_every_html_special_character() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
