#!/bin/bash
# Regenerates prometheusrule.yaml from deploy/prometheus/alerts.yml (the groups, indented under
# `spec:`). tests/deploy_files.rs fails when the two differ.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
{
  cat <<'HEADER'
# Generated from deploy/prometheus/alerts.yml by sync-prometheusrule.sh: the same groups, wrapped
# for the Prometheus Operator. Edit alerts.yml, then rerun the script.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: distillguard
  labels:
    app.kubernetes.io/name: distillguard
spec:
HEADER
  sed -n '/^groups:/,$p' "$here/../prometheus/alerts.yml" | sed 's/^\(.\)/  \1/'
} >"$here/prometheusrule.yaml"
