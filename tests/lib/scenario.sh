# Sourced by the restart and upgrade tests (tests/packaging/*.sh): the hand-over scenario
# of tests/lib/handover-scenario.mjs in the background while the test restarts or upgrades
# the server, then one check per promise of a hand-over, each naming what it counted. The
# caller defines check (ok/not ok counters) and sets W (its temporary folder).

SCENARIO='' SCENARIO_T0=0
# The server's [Monitor] settings that make the scenario its webhook endpoint.
scenario_monitor_conf() {
  printf '[Monitor]\nurl = http://127.0.0.1:%s/\nevents = subscribe, unsubscribe, connect, disconnect\n' "$1"
}

# scenario_start URL WEBHOOK-PORT [RUNNER...]: starts the scenario (RUNNER: a prefix such
# as nsenter into the server's network) and returns once its clients are in and it
# publishes; non-zero (its output shown) if that does not happen within 5 minutes.
scenario_start() {
  local url=$1 port=$2
  shift 2
  rm -f "$W/scenario.ready" "$W/scenario.stop" "$W/scenario.json"
  "$@" node tests/lib/handover-scenario.mjs --url "$url" --webhook-port "$port" \
    --ready "$W/scenario.ready" --stop "$W/scenario.stop" >"$W/scenario.json" 2>"$W/scenario.err" &
  SCENARIO=$!
  SCENARIO_T0=$SECONDS
  local end=$((SECONDS + 300))
  until [[ -e $W/scenario.ready ]]; do
    if ! kill -0 "$SCENARIO" 2>/dev/null || ((SECONDS > end)); then
      sed 's/^/    /' "$W/scenario.err"
      scenario_kill
      return 1
    fi
    sleep 0.5
  done
  echo "    $(tail -n 1 "$W/scenario.err")"
}

# scenario_kill: ends a scenario still running (the caller's EXIT trap).
scenario_kill() {
  if [[ -n $SCENARIO ]]; then
    kill "$SCENARIO" 2>/dev/null
    wait "$SCENARIO" 2>/dev/null
  fi
  SCENARIO=''
}

# scenario_stop: tells the scenario to stop (it waits for what is on its way, at most
# about a minute) and sets REPORT to its JSON report.
scenario_stop() {
  touch "$W/scenario.stop"
  wait "$SCENARIO" || true
  SCENARIO=''
  REPORT=$(cat "$W/scenario.json" 2>/dev/null || true)
  echo "    scenario report ($((SECONDS - SCENARIO_T0)) s from its start): ${REPORT:-(none)}"
  [[ -n $REPORT ]] || sed 's/^/    /' "$W/scenario.err"
}

# field EXPR: a value of REPORT (a JavaScript expression over r), for the check names.
field() { node -e 'const r = JSON.parse(process.argv[1]); console.log(JSON.stringify(eval(process.argv[2])))' "$REPORT" "$1" 2>/dev/null || echo '?'; }

# scenario_checks WHAT: the checks of a report, WHAT naming what the server went through.
scenario_checks() {
  local what=$1
  if [[ -z $REPORT ]]; then
    check "$what: the scenario printed its report" false
    return
  fi
  local ws polling lost dup reo notices hooks
  ws=$(field 'r.disconnects_websocket + r.disconnects_publisher')
  polling=$(field 'r.disconnects_polling')
  lost=$(field 'r.lost') dup=$(field 'r.duplicated') reo=$(field 'r.reordered')
  notices=$(field 'r.churn_notices') hooks=$(field 'r.churn_webhooks')
  echo "    $what: $(field 'r.unrecovered') reconnects without their session (socket.recovered false)"
  echo "    $what: largest delivery delay $(field 'r.max_delay_ms') ms; published $(field 'r.published') in $(field 'r.publishing_s') s; delivered $(field 'r.delivered')"
  check "$what: something was published and delivered" \
    bash -c '[[ $1 != 0 && $1 != "?" ]]' _ "$(field 'r.published.api * r.published.client * r.delivered')"
  check "$what: no WebSocket client saw a disconnect ($ws of $(field 'r.clients.websocket + 1'))" test "$ws" = 0
  check "$what: no polling client saw a disconnect ($polling of $(field 'r.clients.polling'))" test "$polling" = 0
  check "$what: every message once, in order (lost $lost, duplicated $dup: $(field 'r.duplicates'), reordered $reo)" \
    test "$lost$dup$reo" = 000
  check "$what: no onSubscribe/onUnsubscribe churn ($notices notices)" test "$notices" = 0
  check "$what: no webhook churn ($hooks)" test "$hooks" = '{}'
}
