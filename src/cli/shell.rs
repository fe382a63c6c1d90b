//! `kraftd metadata ls|cat PATH`: the image as a tree of paths, like Kafka's metadata
//! shell. It works on the image's JSON (`GET /v1/metadata/image`, or a checkpoint loaded
//! offline and serialized the same way), so the online and offline views are one code.

use serde_json::{Map, Value};

/// The image's sections in the order `ls /` lists them.
pub const SECTIONS: [&str; 5] = ["features", "brokers", "topics", "configs", "producer_ids"];

/// The image's fields in [`SECTIONS`] order, then any others as they came (a JSON map's
/// order does not survive every client, and `ls /` should not depend on it).
pub fn in_order(image: Value) -> Value {
    let Value::Object(mut fields) = image else {
        return image;
    };
    let mut out = Map::new();
    for name in SECTIONS {
        if let Some(v) = fields.shift_remove(name) {
            out.insert(name.to_string(), v);
        }
    }
    out.extend(fields);
    Value::Object(out)
}

/// The browsable tree of an image's JSON: sections in [`SECTIONS`] order, brokers keyed
/// by id, topics by name, and a topic's partitions (by id) beside its own fields;
/// everything else as it is.
pub fn tree(image: &Value) -> Value {
    let Value::Object(fields) = in_order(image.clone()) else {
        return image.clone();
    };
    let mut out = Map::new();
    for (name, v) in &fields {
        let node = match name.as_str() {
            "brokers" => keyed(v, "broker_id", |b| b.clone()),
            "topics" => keyed(v, "name", topic_node),
            _ => v.clone(),
        };
        out.insert(name.clone(), node);
    }
    Value::Object(out)
}

/// A topic's fields, then its partitions by id.
fn topic_node(topic: &Value) -> Value {
    let Value::Object(fields) = topic else {
        return topic.clone();
    };
    let mut out = Map::new();
    for (name, v) in fields {
        if name == "partitions" {
            if let Value::Object(parts) = keyed(v, "partition", |p| p.clone()) {
                out.extend(parts);
                continue;
            }
        }
        out.insert(name.clone(), v.clone());
    }
    Value::Object(out)
}

/// An array of objects as an object keyed by each one's `key` field (arrays without it
/// stay as they are).
fn keyed(v: &Value, key: &str, node: impl Fn(&Value) -> Value) -> Value {
    let Value::Array(items) = v else {
        return v.clone();
    };
    let mut out = Map::new();
    for item in items {
        let name = match item.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return v.clone(),
        };
        out.insert(name, node(item));
    }
    Value::Object(out)
}

/// The node at `path` (`/topics/orders/0`; `.` and `..` work; a leading `/` is optional),
/// or the normalized path that does not exist.
pub fn resolve<'a>(tree: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut node = tree;
    for (i, seg) in parts.iter().enumerate() {
        node = match node {
            Value::Object(m) => m.get(*seg),
            _ => None,
        }
        .ok_or_else(|| format!("/{}", parts[..=i].join("/")))?;
    }
    Ok(node)
}

/// What `ls` prints for a node: a directory's entries, `name/` for a directory and
/// `name: value` for a leaf; a leaf alone prints as its value.
pub fn listing(node: &Value) -> Vec<String> {
    match node {
        Value::Object(m) => m
            .iter()
            .map(|(name, v)| match v {
                Value::Object(_) => format!("{name}/"),
                leaf => format!("{name}: {}", leaf_text(leaf)),
            })
            .collect(),
        leaf => vec![leaf_text(leaf)],
    }
}

/// A leaf as one line: strings bare, anything else as compact JSON.
fn leaf_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image() -> Value {
        json!({
            "features": {"metadata.version": 16},
            "brokers": [{"broker_id": 1, "rack": "a"}, {"broker_id": 2, "rack": null}],
            "producer_ids": null,
            "topics": [{"name": "orders", "topic_id": "T1", "partitions": [
                {"partition": 0, "leader": 1, "replicas": [1, 2]},
                {"partition": 1, "leader": 2, "replicas": [2, 1]}
            ]}],
            "configs": {"brokers": {"": {"a": "1"}}, "topics": {"orders": {"retention.ms": "1"}}}
        })
    }

    #[test]
    fn the_root_lists_the_image_sections() {
        let t = tree(&image());
        assert_eq!(
            listing(resolve(&t, "/").unwrap()),
            vec![
                "features/",
                "brokers/",
                "topics/",
                "configs/",
                "producer_ids: null"
            ]
        );
    }

    #[test]
    fn the_root_order_does_not_depend_on_the_answers_order() {
        let shuffled = json!({"configs": {}, "producer_ids": null, "topics": [], "brokers": [],
            "features": {}});
        assert_eq!(
            listing(&tree(&shuffled)),
            vec![
                "features/",
                "brokers/",
                "topics/",
                "configs/",
                "producer_ids: null"
            ]
        );
    }

    #[test]
    fn topics_list_by_name_and_a_topic_lists_its_fields_and_partitions() {
        let t = tree(&image());
        assert_eq!(listing(resolve(&t, "/topics").unwrap()), vec!["orders/"]);
        assert_eq!(
            listing(resolve(&t, "topics/orders").unwrap()),
            vec!["name: orders", "topic_id: T1", "0/", "1/"]
        );
        assert_eq!(
            listing(resolve(&t, "/topics/orders/1").unwrap()),
            vec!["partition: 1", "leader: 2", "replicas: [2,1]"]
        );
        assert_eq!(
            listing(resolve(&t, "/topics/orders/1/leader").unwrap()),
            vec!["2"]
        );
    }

    #[test]
    fn brokers_by_id_configs_by_resource_and_dot_dot() {
        let t = tree(&image());
        assert_eq!(
            listing(resolve(&t, "/brokers/1").unwrap()),
            vec!["broker_id: 1", "rack: a"]
        );
        assert_eq!(
            listing(resolve(&t, "/configs/topics/orders").unwrap()),
            vec!["retention.ms: 1"]
        );
        assert_eq!(
            listing(resolve(&t, "/topics/orders/../../brokers").unwrap()),
            vec!["1/", "2/"]
        );
    }

    #[test]
    fn a_missing_path_names_the_first_missing_part() {
        let t = tree(&image());
        assert_eq!(resolve(&t, "/topics/nope/0"), Err("/topics/nope".into()));
        assert_eq!(
            resolve(&t, "/topics/orders/0/leader/x"),
            Err("/topics/orders/0/leader/x".into())
        );
    }
}
