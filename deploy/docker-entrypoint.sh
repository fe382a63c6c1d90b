#!/bin/sh
# Entrypoint of the kraftd image: formats the data directory on first start, then runs
# `kraftd serve` as PID 1 (it stops cleanly on SIGTERM).
#
#   (no arguments) | serve [SERVE FLAGS...]   format if needed, then serve
#   anything else                              run kraftd with those arguments, e.g.
#                                              `random-uuid`, `dump FILE`, `--help`
#
# Read only by this script (and removed from the environment before kraftd starts, so
# `serve` does not warn about KRAFTD_* variables that are not settings):
#   KRAFTD_CLUSTER_ID   cluster id (`kraftd random-uuid`); the same on every controller
#   KRAFTD_NODE_ID      this controller's node id, or `auto`: the ordinal at the end of
#                       the host name plus one (StatefulSet pod kraftd-0 is node 1)
#   KRAFTD_VOTERS       bootstrap voters, ID@HOST:PEER_PORT,... (as `kraftd format --voters`)
#   KRAFTD_JOIN         `true`: format an empty volume with `--join` instead (a replaced
#                       disk or a new controller; KRAFTD_VOTERS is then not needed). A volume
#                       formatted with KRAFTD_VOTERS for a cluster that already has history
#                       is caught at start: the node refuses the first election and stays an
#                       observer (see deploy/README.md, "Replacing a lost or damaged disk")
#   KRAFTD_CONFIG_FILE  settings file; default /etc/kraftd/kraftd.toml, used if present
#   KRAFTD_TLS_DIR      a directory laid out as `kraftd certs` writes it (the image sets
#                       /etc/kraftd/tls): when it holds ca.pem, this node serves TLS with
#                       controller-<node id>.pem and -key.pem, and authenticates the API
#                       with principals.toml (each unless its KRAFTD_TLS_*/KRAFTD_AUTH_*
#                       setting is given)
# The format variables are needed only while the data directory is unformatted.
# On later starts they are checked against meta.properties when given, so a volume is
# never silently served under another cluster id or node id.
#
# Settings of `serve` come from KRAFTD_<SETTING> variables (the image sets KRAFTD_DATA_DIR,
# KRAFTD_API_ADDR and KRAFTD_PEER_ADDR), the settings file, or serve flags.
set -eu

say() { echo "kraftd-entrypoint: $*" >&2; }
die() { say "$*"; exit 1; }

if [ "$#" -eq 0 ]; then
  set -- serve
fi
if [ "$1" != serve ]; then
  exec kraftd "$@"
fi
shift

data_dir="${KRAFTD_DATA_DIR:-/var/lib/kraftd}"
cluster_id="${KRAFTD_CLUSTER_ID:-}"
node_id="${KRAFTD_NODE_ID:-}"
voters="${KRAFTD_VOTERS:-}"
join="${KRAFTD_JOIN:-false}"

config="${KRAFTD_CONFIG_FILE:-/etc/kraftd/kraftd.toml}"
if [ -n "${KRAFTD_CONFIG_FILE:-}" ] && [ ! -f "$config" ]; then
  die "KRAFTD_CONFIG_FILE=$config does not exist"
fi

if [ "$node_id" = auto ]; then
  # HOSTNAME is set by Docker and Kubernetes, though POSIX sh does not promise it.
  # shellcheck disable=SC3028
  host="${HOSTNAME:-$(cat /proc/sys/kernel/hostname)}"
  ordinal="${host##*-}"
  case "$ordinal" in
    '' | *[!0-9]*)
      die "KRAFTD_NODE_ID=auto needs a host name ending in -ORDINAL (a StatefulSet pod), not '$host'"
      ;;
  esac
  node_id=$((ordinal + 1))
  say "host $host: node id $node_id"
fi

meta="$data_dir/meta.properties"
if [ -f "$meta" ]; then
  have_cluster="$(sed -n 's/^cluster\.id=//p' "$meta")"
  have_node="$(sed -n 's/^node\.id=//p' "$meta")"
  if [ -n "$cluster_id" ] && [ "$cluster_id" != "$have_cluster" ]; then
    die "$data_dir belongs to cluster $have_cluster, but KRAFTD_CLUSTER_ID is $cluster_id: refusing to start"
  fi
  if [ -n "$node_id" ] && [ "$node_id" != "$have_node" ]; then
    die "$data_dir belongs to node $have_node, but this is node $node_id: refusing to start"
  fi
  say "$data_dir is formatted: node $have_node of cluster $have_cluster"
else
  [ -n "$cluster_id" ] || die "$data_dir is not formatted and KRAFTD_CLUSTER_ID is not set"
  [ -n "$node_id" ] || die "$data_dir is not formatted and KRAFTD_NODE_ID is not set"
  # --ignore-formatted: if another start formatted it in the meantime, keep that.
  case "$join" in
    true | 1)
      kraftd format --data-dir "$data_dir" --cluster-id "$cluster_id" --node-id "$node_id" \
        --join --ignore-formatted
      ;;
    false | 0 | '')
      [ -n "$voters" ] || die "$data_dir is not formatted and neither KRAFTD_VOTERS nor KRAFTD_JOIN=true is set"
      kraftd format --data-dir "$data_dir" --cluster-id "$cluster_id" --node-id "$node_id" \
        --voters "$voters" --ignore-formatted
      ;;
    *) die "KRAFTD_JOIN=$join: expected true or false" ;;
  esac
fi

tls_dir="${KRAFTD_TLS_DIR:-}"
if [ -n "$tls_dir" ] && [ -f "$tls_dir/ca.pem" ]; then
  id="${node_id:-${have_node:-}}"
  [ -n "$id" ] || die "KRAFTD_TLS_DIR=$tls_dir: the node id is not known"
  : "${KRAFTD_TLS_CERT_FILE:=$tls_dir/controller-$id.pem}"
  : "${KRAFTD_TLS_KEY_FILE:=$tls_dir/controller-$id-key.pem}"
  : "${KRAFTD_TLS_CA_FILE:=$tls_dir/ca.pem}"
  export KRAFTD_TLS_CERT_FILE KRAFTD_TLS_KEY_FILE KRAFTD_TLS_CA_FILE
  if [ -f "$tls_dir/principals.toml" ]; then
    : "${KRAFTD_AUTH_PRINCIPALS_FILE:=$tls_dir/principals.toml}"
    export KRAFTD_AUTH_PRINCIPALS_FILE
  fi
  say "TLS with $KRAFTD_TLS_CERT_FILE"
fi

unset KRAFTD_CLUSTER_ID KRAFTD_NODE_ID KRAFTD_VOTERS KRAFTD_JOIN KRAFTD_CONFIG_FILE KRAFTD_TLS_DIR
# The directory just formatted is the one served, whatever a settings file says.
KRAFTD_DATA_DIR="$data_dir"
export KRAFTD_DATA_DIR

if [ -f "$config" ]; then
  exec kraftd serve --config "$config" "$@"
fi
exec kraftd serve "$@"
