#!/usr/bin/env bash
# run.sh: the Helm chart's tests (`make k8s`, part of `make test`).
#
#  1. helm lint --strict, for the default values and every helm/tollgate/ci/*.yaml;
#  2. helm template of each, for Kubernetes 1.20 and for the newest helm knows (policy/v1, autoscaling/v2);
#  3. every tests/k8s/bad/*.yaml must fail at install time with the message its "# expect:" line names;
#  4. no secret is ever a plain value in the rendered output (only secretKeyRef; only generated Secrets);
#  5. against a real kube-apiserver (1.20, built from Debian's source, tools.sh) and etcd on loopback:
#     server-side dry run of every rendering, then a real helm install / upgrade / rollback / uninstall
#     of the default values (checking what each must change and keep: generated secrets survive upgrade,
#     rollback and uninstall), and an install + uninstall of every ci/ file in a namespace of its own.
#
# Nothing runs the pods (no kubelet, scheduler or controllers): objects are validated and stored. The
# migration Job is a hook helm waits for, so a small loop here plays the Job controller and marks each
# hook Job complete, which also proves the hook ran before the release's other objects existed.
#
# Steps 1-4 need only helm (fetched by tools.sh). When the API server cannot be had (no Go, no apt
# source), step 5 is skipped with the reason, and the script still fails on anything 1-4 found.
# Processes are stopped by PID; the work dir is removed (TOLLGATE_K8S_KEEP=1 keeps it).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CHART="$ROOT/helm/tollgate"
KEEP=${TOLLGATE_K8S_KEEP:-0}
T0=$SECONDS

pass=0
fail=0
say() { echo "k8s: $*"; }
ok() {
	pass=$((pass + 1))
	echo "ok - $*"
}
bad() {
	fail=$((fail + 1))
	echo "not ok - $*"
}
# check NAME CMD...: runs CMD quietly, reports; its output is shown only on failure.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$name"
	else
		bad "$name"
		echo "$out" | tail -n 30 | sed 's/^/    /'
	fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-k8s.XXXXXX")
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	if [[ "$KEEP" == 1 ]]; then
		say "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# ---- tools ------------------------------------------------------------------------------------------
if ! tools=$(bash "$HERE/tools.sh" helm); then
	echo "k8s: helm could not be fetched (see above); the chart was NOT tested" >&2
	exit 1
fi
eval "$tools"
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
# kubectl's default server (127.0.0.1:8080) may be something else on this machine: always a kubeconfig.
export KUBECONFIG="$WORK/kubeconfig"
: >"$KUBECONFIG"

VALUES=("" "$CHART"/ci/*.yaml)
vflag() { [[ -n "$1" ]] && echo "-f $1" || true; }
vname() { [[ -n "$1" ]] && basename "$1" .yaml || echo default; }
# The API versions of a 1.20 server (what .Capabilities says there), for offline renderings.
KUBE_120=(--kube-version 1.20.2)

# ---- 1. lint ----------------------------------------------------------------------------------------
for v in "${VALUES[@]}"; do
	# shellcheck disable=SC2046
	check "helm lint --strict ($(vname "$v"))" "$HELM" lint --strict "$CHART" $(vflag "$v")
done

# ---- 2. template ------------------------------------------------------------------------------------
mkdir -p "$WORK/rendered"
for v in "${VALUES[@]}"; do
	n=$(vname "$v")
	# shellcheck disable=SC2046
	check "helm template ($n, newest API versions)" \
		sh -c "'$HELM' template tg '$CHART' -n tollgate $(vflag "$v") >'$WORK/rendered/$n.yaml'"
	# shellcheck disable=SC2046
	check "helm template ($n, Kubernetes 1.20)" \
		"$HELM" template tg "$CHART" -n tollgate "${KUBE_120[@]}" $(vflag "$v")
done

# ---- 3. bad values fail with a clear message --------------------------------------------------------
for f in "$HERE"/bad/*.yaml; do
	want=$(sed -n 's/^# expect: //p' "$f" | head -n 1)
	name="bad values rejected: $(basename "$f" .yaml)"
	if out=$("$HELM" template tg "$CHART" -f "$f" 2>&1); then
		bad "$name (rendered without an error)"
	elif grep -Eiq -- "$want" <<<"$out"; then
		ok "$name"
	else
		bad "$name (wanted /$want/)"
		echo "$out" | head -n 10 | sed 's/^/    /'
	fi
done

# ---- 4. no plain secrets ----------------------------------------------------------------------------
# Every variable that carries a secret must come from a secretKeyRef: a `value:` right after its name
# would be a secret in plain text in the rendered output.
secret_vars='DATABASE_URL|TOLLGATE_ADMIN_TOKEN|TOLLGATE_MASTER_KEY|TOLLGATE_CLUSTER_SECRET|TOLLGATE_OPS_TOKEN|POSTGRES_PASSWORD'
plain_secrets() {
	local f=$1
	if grep -EA1 -- "- name: ($secret_vars)\$" "$f" | grep -Eq '^\s+value:'; then
		echo "a secret variable has a plain value in $f"
		return 1
	fi
	# Secrets appear only as generated Secret data (base64), never as stringData.
	if grep -q 'stringData:' "$f"; then
		echo "stringData in $f"
		return 1
	fi
}
for v in "${VALUES[@]}"; do
	n=$(vname "$v")
	[[ -f "$WORK/rendered/$n.yaml" ]] && check "secrets only by reference ($n)" plain_secrets "$WORK/rendered/$n.yaml"
done
# With every secret from existing Secrets, the chart generates nothing at all.
check "nothing generated when every secret exists already" \
	sh -c "! grep -q '^kind: Secret' '$WORK/rendered/existing-secrets-values.yaml'"

# The ops token: in both Deployments by reference, and sent by the ServiceMonitor from the same Secret.
sm_auth() { # values-args... -> how many endpoints send Bearer <secret>/<key>
	"$HELM" template tg "$CHART" -n tollgate "$@" --show-only templates/servicemonitor.yaml | tr -d ' ' | tr '\n' '|' |
		grep -o 'authorization:|type:Bearer|credentials:|name:[^|]*|key:[^|]*|' | sort | uniq -c | sed 's/^ *//'
}
check "ServiceMonitor sends the generated ops token on both endpoints" \
	test "$(sm_auth -f "$CHART/ci/production-values.yaml")" = "2 authorization:|type:Bearer|credentials:|name:tg-tollgate-secrets|key:ops-token|"
check "ServiceMonitor sends an existing ops token Secret" \
	test "$(sm_auth --set serviceMonitor.enabled=true --set secrets.opsToken.existingSecret=ops --set secrets.opsToken.key=tok)" = "2 authorization:|type:Bearer|credentials:|name:ops|key:tok|"
check "ops token off: no TOLLGATE_OPS_TOKEN, no ServiceMonitor credentials, nothing generated for it" \
	sh -c "! '$HELM' template tg '$CHART' -n tollgate --set secrets.opsToken.enabled=false --set serviceMonitor.enabled=true |
		grep -Eq 'TOLLGATE_OPS_TOKEN|authorization:|ops-token'"

offline_summary() { echo "# k8s offline checks: $pass passed, $fail failed"; }

# ---- 5. a real API server ---------------------------------------------------------------------------
set +e
server_tools=$(bash "$HERE/tools.sh" apiserver)
rc=$?
set -e
if ((rc != 0)); then
	offline_summary
	echo "k8s: SKIPPED the server-side dry run and install/upgrade/rollback/uninstall: kube-apiserver" \
		"could not be built here (reason above)."
	echo "$pass passed, $fail failed"
	exit $((fail > 0))
fi
eval "$server_tools"

freeport() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
ETCD_PORT=$(freeport)
ETCD_PEER=$(freeport)
API_PORT=$(freeport)
mkdir -p "$WORK/etcd" "$WORK/pki"
"$ETCD" --name k8s-test --data-dir "$WORK/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
	--initial-cluster "k8s-test=http://127.0.0.1:$ETCD_PEER" --log-level error >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)

TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
echo "$TOKEN,admin,admin,system:masters" >"$WORK/pki/tokens.csv"
openssl genrsa -out "$WORK/pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$WORK/pki/sa.key" -pubout -out "$WORK/pki/sa.pub" 2>/dev/null
"$APISERVER" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
	--cert-dir "$WORK/pki" --token-auth-file "$WORK/pki/tokens.csv" --authorization-mode RBAC \
	--service-account-key-file "$WORK/pki/sa.pub" --service-account-signing-key-file "$WORK/pki/sa.key" \
	--service-account-issuer https://kubernetes.default.svc --disable-admission-plugins ServiceAccount \
	--endpoint-reconciler-type none --service-cluster-ip-range 10.96.0.0/16 >"$WORK/apiserver.log" 2>&1 &
PIDS+=($!)
API_PID=$!

cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}
users:
  - name: admin
    user: {token: "$TOKEN"}
contexts:
  - name: test
    context: {cluster: test, user: admin}
current-context: test
EOF
k() { "$KUBECTL" "$@"; }

ready=0
for _ in $(seq 600); do
	kill -0 "$API_PID" 2>/dev/null || break
	if k get --raw /readyz >/dev/null 2>&1; then
		ready=1
		break
	fi
	sleep 0.1
done
if ((ready == 0)); then
	bad "kube-apiserver ready on 127.0.0.1:$API_PORT"
	tail -n 30 "$WORK/apiserver.log" | sed 's/^/    /'
	echo "$pass passed, $fail failed"
	exit 1
fi
ok "kube-apiserver $(k version -o json 2>/dev/null | jq -r .serverVersion.gitVersion) ready on loopback after $((SECONDS - T0)) s"

# The ServiceMonitor CRD (Prometheus Operator), reduced to its name and an open schema.
k apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
EOF
k wait --for condition=established --timeout=30s crd/servicemonitors.monitoring.coreos.com >/dev/null

# The stand-in Job controller: marks every hook Job complete, and logs which it saw.
fake_job_controller() {
	while :; do
		k get jobs -A -o json 2>/dev/null |
			jq -r '.items[] | select((.status.conditions // []) | length == 0) | "\(.metadata.namespace) \(.metadata.name)"' |
			while read -r ns name; do
				# Count the Deployments first: a pre-install hook runs before any exists.
				deployments=$(k -n "$ns" get deploy -o name 2>/dev/null | wc -l)
				if k -n "$ns" patch job "$name" --subresource=status --type=merge \
					-p '{"status":{"succeeded":1,"conditions":[{"type":"Complete","status":"True"}]}}' >/dev/null 2>&1; then
					echo "$ns $name $deployments" >>"$WORK/jobs.log"
				fi
			done
		sleep 0.2
	done
}
: >"$WORK/jobs.log"
fake_job_controller &
PIDS+=($!)

# ---- 5a. server-side dry run of every rendering (rendered with the server's own capabilities) -------
for v in "${VALUES[@]}"; do
	n=$(vname "$v")
	ns="dry-$n"
	ns=${ns//_/-}
	k create namespace "$ns" >/dev/null
	# shellcheck disable=SC2046
	check "server-side dry run ($n)" sh -c "'$HELM' template tg '$CHART' -n '$ns' --validate $(vflag "$v") |
		'$KUBECTL' apply -n '$ns' --dry-run=server -f -"
done
# The dry run must catch what the schema lets through (a sanity check of the check itself).
check "server-side dry run rejects an invalid object" sh -c "! '$HELM' template tg '$CHART' -n dry-default --validate \
	--set dataplane.podLabels.bad_label_value='-x-' | '$KUBECTL' apply -n dry-default --dry-run=server -f - "

# ---- 5b. install / upgrade / rollback / uninstall ---------------------------------------------------
NS=tollgate
H() { "$HELM" "$@" -n "$NS" --timeout 90s; }
jpath() { k -n "$NS" get "$1" -o jsonpath="$2" 2>/dev/null; }

check "helm install (default values)" H install tg "$CHART" --create-namespace
check "migration Job ran as a pre-install hook, before the Deployments existed" \
	grep -q "^$NS tg-tollgate-migrate 0\$" "$WORK/jobs.log"
check "hook Job deleted after success" sh -c "! '$KUBECTL' -n $NS get job tg-tollgate-migrate"
check "control plane: 2 replicas, rollout never waits for a standby to be Ready" \
	test "$(jpath deploy/tg-tollgate-controlplane '{.spec.replicas}/{.spec.strategy.rollingUpdate.maxUnavailable}')" = "2/2"
check "dataplane: readiness /readyz, preStop, grace covers the drain" \
	test "$(jpath deploy/tg-tollgate-dataplane '{.spec.template.spec.containers[0].readinessProbe.httpGet.path} {.spec.template.spec.containers[0].lifecycle.preStop.exec.command[0]} {.spec.template.spec.terminationGracePeriodSeconds}')" = "/readyz /bin/sleep 320"
check "HPA (autoscaling/v2beta2 on 1.20)" test "$(jpath hpa/tg-tollgate-dataplane '{.spec.maxReplicas}')" = "10"
check "PodDisruptionBudget (policy/v1beta1 on 1.20)" test "$(jpath pdb/tg-tollgate-dataplane '{.spec.maxUnavailable}')" = "1"
check "generated Secret holds the four secrets" \
	test "$(k -n $NS get secret tg-tollgate-secrets -o json | jq -r '.data | keys | join(",")')" = "admin-token,cluster-secret,master-key,ops-token"
for d in dataplane controlplane; do
	check "$d: TOLLGATE_OPS_TOKEN from the generated Secret" \
		test "$(jpath deploy/tg-tollgate-$d '{.spec.template.spec.containers[0].env[?(@.name=="TOLLGATE_OPS_TOKEN")].valueFrom.secretKeyRef.name}/{.spec.template.spec.containers[0].env[?(@.name=="TOLLGATE_OPS_TOKEN")].valueFrom.secretKeyRef.key}')" = "tg-tollgate-secrets/ops-token"
done
master_key=$(jpath secret/tg-tollgate-secrets '{.data.master-key}' | base64 -d)
check "generated master key is 64 hex characters" grep -Eq '^[0-9a-f]{64}$' <<<"$master_key"
admin_token=$(jpath secret/tg-tollgate-secrets '{.data.admin-token}')
ops_token=$(jpath secret/tg-tollgate-secrets '{.data.ops-token}')
check "generated ops token present" test -n "$ops_token"

check "helm upgrade (longer drain)" H upgrade tg "$CHART" --reuse-values --set dataplane.drainTimeoutSeconds=600
check "upgrade applied" test "$(jpath deploy/tg-tollgate-dataplane '{.spec.template.spec.terminationGracePeriodSeconds}')" = "620"
check "upgrade ran the migration hook again" test "$(grep -c "^$NS tg-tollgate-migrate " "$WORK/jobs.log")" = 2
check "upgrade kept the generated secrets" test "$(jpath secret/tg-tollgate-secrets '{.data.admin-token}/{.data.ops-token}')" = "$admin_token/$ops_token"

check "helm rollback to revision 1" H rollback tg 1
check "rollback restored the drain" test "$(jpath deploy/tg-tollgate-dataplane '{.spec.template.spec.terminationGracePeriodSeconds}')" = "320"
check "rollback kept the generated secrets" test "$(jpath secret/tg-tollgate-secrets '{.data.master-key}' | base64 -d)" = "$master_key"
check "release history: install, upgrade, rollback" test "$("$HELM" history tg -n "$NS" -o json | jq -r '[.[].status] | join(",")')" = "superseded,superseded,deployed"

check "helm uninstall" H uninstall tg
check "uninstall removed the release's objects" \
	test "$(k -n $NS get deploy,svc,hpa,pdb -l app.kubernetes.io/instance=tg -o name | wc -l)" = 0
check "uninstall kept the generated secrets (the master key)" \
	test "$(jpath secret/tg-tollgate-secrets '{.data.master-key}' | base64 -d)" = "$master_key"
check "reinstall reuses them" H install tg "$CHART"
check "reinstall: same master key" test "$(jpath secret/tg-tollgate-secrets '{.data.master-key}' | base64 -d)" = "$master_key"
check "helm uninstall again" H uninstall tg

# ---- 5c. every ci/ values file installs and uninstalls ----------------------------------------------
for v in "$CHART"/ci/*.yaml; do
	n=$(vname "$v")
	ns="ci-${n//_/-}"
	check "helm install ($n)" "$HELM" install tg "$CHART" -n "$ns" --create-namespace -f "$v" --timeout 90s
	check "helm uninstall ($n)" "$HELM" uninstall tg -n "$ns" --timeout 90s
done
check "bundled PostgreSQL: migration hook ran post-install" \
	grep -q "^ci-bundled-postgresql-values tg-tollgate-migrate [1-9]" "$WORK/jobs.log"

echo "# k8s chart tests took $((SECONDS - T0)) s"
echo "$pass passed, $fail failed"
exit $((fail > 0))
