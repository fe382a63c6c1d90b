//! `GET /ui` rendered by a real browser (headless Chromium): on a live three-node quorum
//! with three brokers, one of them fenced, the page shows the leader, the epoch, each
//! node's lag, the fenced broker and the topic's under-replicated partitions; once a
//! follower is killed, a degraded banner and that follower marked down. The screenshot,
//! taken then, is kept as `test-artifacts/status-page.png`.
//!
//! Chromium is required (CI installs the Debian package `chromium`): without it this test
//! fails rather than skips.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kraftd::client::CreateTopic;

const RACK: &str = "rack<b>&";

fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return PathBuf::from(c);
        }
    }
    panic!(
        "headless Chromium is needed for the status page test and was not found at \
         /usr/bin/chromium: install it with `apt-get install -y chromium` (.ci/run does)"
    );
}

/// Runs Chromium headless on `url` with `args`; returns its stdout.
async fn browse(url: &str, args: &[&str], profile: &Path) -> String {
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finishes within 90 s")
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium {args:?} {url} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_status_page_shows_the_quorum_lag_and_a_fenced_broker_in_a_browser() {
    let browser = chromium(); // fail first, before starting a quorum
    eprintln!("using {}", browser.display());
    run("status_page", async {
        let mut s = Scenario::start(3, &[("KRAFTD_BROKER_SESSION_TIMEOUT_MS", "1500")]).await;
        let leader = s.leader().await;
        let c = s.client(leader);

        eprintln!("step 1: three brokers register and heartbeat; a topic over all three");
        let (fleet, _) = s
            .start_brokers(
                &[1, 2, 3],
                // A rack with HTML in it must reach the page as text.
                |id| (id == 2).then(|| RACK.to_string()),
                Duration::from_millis(200),
            )
            .await;
        c.create_topic(&CreateTopic {
            name: "orders".into(),
            partitions: Some(6),
            replication_factor: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();

        eprintln!("step 2: broker 3 goes silent and is fenced by session expiry");
        fleet.pause(3, true);
        eventually("broker 3 fenced", CONVERGE, || async {
            let b = c.brokers().await.map_err(err_text)?;
            match b.iter().find(|b| b.id == 3) {
                Some(b) if b.state == "fenced" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        eprintln!("step 3: the leader's page, as Chromium renders it");
        // Leadership may move while Chromium loads the machine (two cores, missed
        // heartbeats): take the page of the node that leads before and after it is
        // rendered, trying at most five times.
        let profile = tempfile::tempdir().unwrap();
        let mut attempt = 0;
        let (leader, status, _, dom) = loop {
            attempt += 1;
            let leader = s.leader().await;
            let status = s.client(leader).quorum_status().await.unwrap();
            let api = s.q.node(leader).unwrap().api_addr;
            let url = format!("http://{api}/ui");
            let dom = browse(&url, &["--dump-dom"], profile.path()).await;
            let still = s.leader().await == leader
                && dom.contains(&format!("<td id=\"leader-id\">{leader}</td>"));
            if still || attempt == 5 {
                break (leader, status, url, dom);
            }
            eprintln!("  leadership moved while the page of node {leader} rendered; again");
        };
        let follower = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
        let has = |needle: &str| {
            assert!(dom.contains(needle), "the DOM lacks {needle:?}:\n{dom}");
        };
        has(&format!("<td id=\"leader-id\">{leader}</td>"));
        // The epoch may have moved on between the status call and the page (a slow machine
        // can miss heartbeats): the page shows the epoch of now, never an older one.
        let epoch_cell = "<td id=\"epoch\">";
        let shown: i64 = dom
            .find(epoch_cell)
            .map(|at| &dom[at + epoch_cell.len()..])
            .and_then(|rest| rest.split('<').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the page shows no epoch:\n{dom}"));
        assert!(
            shown >= status.leader_epoch,
            "the page shows epoch {shown}, older than {}",
            status.leader_epoch
        );
        has("Served by node");
        has("As reported by this node, the leader.");
        for id in s.q.ids() {
            let cell = format!("<td class=\"lag\" data-node=\"{id}\">");
            let at = dom
                .find(&cell)
                .unwrap_or_else(|| panic!("no lag figure for node {id}:\n{dom}"));
            let figure: String = dom[at + cell.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            assert!(!figure.is_empty(), "node {id}'s lag is not a number");
            eprintln!("  node {id}: lag {figure} records");
        }
        has("<tr class=\"broker fenced\" data-broker=\"3\"><td>3</td><td>fenced</td>");
        has("<tr class=\"broker active\" data-broker=\"1\">");
        has("<td>orders</td>");
        has("<td>rack&lt;b&gt;&amp;</td>");
        assert!(!dom.contains(RACK), "the rack went into the page unescaped");

        eprintln!("step 4: a follower's page says who serves it and asks the leader for the lag");
        let mut attempt = 0;
        let (leader, follower, fdom) = loop {
            attempt += 1;
            let leader = if attempt == 1 {
                leader
            } else {
                s.leader().await
            };
            let follower = if attempt == 1 {
                follower
            } else {
                s.q.ids().into_iter().find(|&i| i != leader).unwrap()
            };
            let fapi = s.q.node(follower).unwrap().api_addr;
            let fdom = browse(
                &format!("http://{fapi}/ui"),
                &["--dump-dom"],
                profile.path(),
            )
            .await;
            if s.leader().await == leader || attempt == 5 {
                break (leader, follower, fdom);
            }
            eprintln!("  leadership moved while the follower's page rendered; again");
        };
        assert!(
            fdom.contains(&format!("Served by node <b>{follower}</b> (Follower)")),
            "{fdom}"
        );
        assert!(
            fdom.contains(&format!(
                "As reported by the leader, node {leader}, asked by node {follower}."
            )),
            "{fdom}"
        );
        assert!(fdom.contains("<tr class=\"broker fenced\" data-broker=\"3\">"));

        eprintln!(
            "step 5: a follower is killed; the leader's page says degraded and marks it down"
        );
        let killed = s.q.ids().into_iter().find(|&i| i != leader).unwrap();
        s.q.kill9(killed).await.unwrap();
        let mut attempt = 0;
        let (leader, url, dom) = loop {
            attempt += 1;
            // Past the down timeout (2.4 s with the default election timeouts).
            tokio::time::sleep(Duration::from_secs(3)).await;
            let leader = s.leader().await;
            let api = s.q.node(leader).unwrap().api_addr;
            let url = format!("http://{api}/ui");
            let dom = browse(&url, &["--dump-dom"], profile.path()).await;
            let shown = dom.contains(&format!("<td id=\"leader-id\">{leader}</td>"))
                && dom.contains("<div id=\"health\" class=\"banner degraded\">");
            if shown || attempt == 5 {
                break (leader, url, dom);
            }
            eprintln!("  not degraded yet, or leadership moved; again");
        };
        let has = |needle: &str| {
            assert!(dom.contains(needle), "the DOM lacks {needle:?}:\n{dom}");
        };
        has(&format!(
            "<div id=\"health\" class=\"banner degraded\"><b>degraded (down: {killed}"
        ));
        has(&format!(
            "<tr class=\"down\" data-node=\"{killed}\"><td>{killed}</td><td>Follower</td><td class=\"state\" data-node=\"{killed}\">down</td>"
        ));
        let survivor =
            s.q.ids()
                .into_iter()
                .find(|&i| i != leader && i != killed)
                .unwrap();
        let survivor_api = s.q.node(survivor).unwrap().api_addr;
        has(&format!(
            "<td class=\"state\" data-node=\"{survivor}\">up</td>"
        ));
        has(&format!(
            "<a href=\"http://{survivor_api}/ui\">{survivor_api}</a>"
        ));
        has("<td id=\"version\">kraftd ");
        has("<p id=\"data-as-of\">Data as of ");
        has("<td id=\"checkpoint\">");

        eprintln!("step 6: a screenshot of the leader's page for people");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("status-page.png");
        let _ = std::fs::remove_file(&png);
        browse(
            &url,
            &[
                &format!("--screenshot={}", png.display()),
                "--window-size=1280,900",
            ],
            profile.path(),
        )
        .await;
        let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
            "{} is not a plausible PNG ({} bytes)",
            png.display(),
            bytes.len()
        );
        eprintln!("  screenshot: {} ({} bytes)", png.display(), bytes.len());
        fleet.stop().await;
    });
}
