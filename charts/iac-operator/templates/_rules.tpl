{{/*
The alerting rules, shared by the PrometheusRule (templates/prometheusrule.yaml) and
the plain rules file deploy/prometheus/rules.yaml, which is this template rendered with
the default values and the release name iac-operator (a test checks they agree).

Only the leader exports iacsearch_* series (docs/metrics.md); aggregating by the
object's labels drops instance and pod, so the series carry over when leadership moves.
Budget alerts compare with iacsearch_budget_gpu_seconds and iacsearch_budget_usd (gauges
of spec.budget, absent when unset).
*/}}
{{- define "iac-operator.ruleGroups" -}}
{{- $p := .Values.prometheusRule -}}
{{- $job := include "iac-operator.fullname" . -}}
{{- $extra := $p.additionalLabels -}}
groups:
  - name: iac-operator.searches
    rules:
      - alert: IACSearchNoProgress
        # Searching now and already a window ago, yet the epoch counter did not move.
        expr: |
          (
            max by (namespace, name) (iacsearch_phase{phase="Searching"} == 1)
            and on (namespace, name)
            max by (namespace, name) (iacsearch_phase{phase="Searching"} offset {{ $p.noProgressFor }} == 1)
          )
          unless on (namespace, name)
          (max by (namespace, name) (increase(iacsearch_search_epochs_total[{{ $p.noProgressFor }}])) > 0)
        for: 5m
        labels:
          severity: warning
          {{- with $extra }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: "IACSearch {{`{{ $labels.namespace }}/{{ $labels.name }}`}} has made no search progress for {{ $p.noProgressFor }}"
          description: >-
            The search phase has not finished an epoch in {{ $p.noProgressFor }}. Check the
            phase pod (`kubectl -n {{`{{ $labels.namespace }}`}} get pods -l iac.dev/search={{`{{ $labels.name }}`}}`)
            and its logs; a backbone trained from scratch runs before the first search epoch.
      - alert: IACSearchBudgetNearlySpent
        expr: |
          (
            sum by (namespace, name) ({__name__=~"iacsearch_gpu_seconds_total|iacsearch_running_gpu_seconds"})
            / on (namespace, name) max by (namespace, name) (iacsearch_budget_gpu_seconds > 0)
          ) >= {{ $p.budgetWarningRatio }} < 1
          or
          (
            max by (namespace, name) (iacsearch_estimated_cost_usd_total)
            / on (namespace, name) max by (namespace, name) (iacsearch_budget_usd > 0)
          ) >= {{ $p.budgetWarningRatio }} < 1
        labels:
          severity: info
          {{- with $extra }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: "IACSearch {{`{{ $labels.namespace }}/{{ $labels.name }}`}} has spent {{`{{ $value | humanizePercentage }}`}} of its budget"
          description: >-
            spec.budget will soon stop the search (Suspend or Fail, per spec.budget.action).
            Raise spec.budget.maxGPUHours or spec.budget.maxCostUSD to let it finish.
      - alert: IACSearchBudgetExceeded
        expr: |
          (
            sum by (namespace, name) ({__name__=~"iacsearch_gpu_seconds_total|iacsearch_running_gpu_seconds"})
            / on (namespace, name) max by (namespace, name) (iacsearch_budget_gpu_seconds > 0)
          ) >= 1
          or
          (
            max by (namespace, name) (iacsearch_estimated_cost_usd_total)
            / on (namespace, name) max by (namespace, name) (iacsearch_budget_usd > 0)
          ) >= 1
        labels:
          severity: warning
          {{- with $extra }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: "IACSearch {{`{{ $labels.namespace }}/{{ $labels.name }}`}} exceeded its budget"
          description: >-
            The search has used {{`{{ $value | humanizePercentage }}`}} of spec.budget and was
            suspended or failed (spec.budget.action); its condition BudgetExceeded says which.
      - alert: IACSearchPhaseFailures
        # Each failed attempt adds its GPU-seconds to the Failed counter once: count the
        # counter's changes, plus one when the series was born inside the window (the first
        # failure). An attempt that failed before its container ran adds nothing and is
        # missed. The max drops instance and pod, so a leader change is not a change.
        expr: |
          (
            (
              changes((max by (namespace, name, phase) (iacsearch_gpu_seconds_total{outcome="Failed"}))[{{ $p.failureWindow }}:1m]) + 1
              unless on (namespace, name, phase)
              max by (namespace, name, phase) (iacsearch_gpu_seconds_total{outcome="Failed"} offset {{ $p.failureWindow }})
            )
            or
            changes((max by (namespace, name, phase) (iacsearch_gpu_seconds_total{outcome="Failed"}))[{{ $p.failureWindow }}:1m])
          ) >= {{ $p.phaseFailures }}
        labels:
          severity: warning
          {{- with $extra }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: "IACSearch {{`{{ $labels.namespace }}/{{ $labels.name }}`}}: {{`{{ $value }}`}} failed {{`{{ $labels.phase }}`}} attempts in {{ $p.failureWindow }}"
          description: >-
            Phase attempts keep failing (disruptions such as preemption are not counted).
            `kubectl -n {{`{{ $labels.namespace }}`}} describe iacs {{`{{ $labels.name }}`}}` shows the last message.
      - alert: IACSearchFailed
        expr: max by (namespace, name) (iacsearch_phase{phase="Failed"}) == 1
        labels:
          severity: warning
          {{- with $extra }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: "IACSearch {{`{{ $labels.namespace }}/{{ $labels.name }}`}} failed"
          description: >-
            The search ended in phase Failed; its Stalled and Ready conditions give the reason.
  - name: iac-operator.operator
    rules:
      - alert: IACOperatorDown
        expr: absent(up{job="{{ $job }}"} == 1)
        for: {{ $p.operatorDownFor }}
        labels:
          severity: critical
          {{- with $extra }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: No iac-operator replica has been scraped for {{ $p.operatorDownFor }}
          description: >-
            IACSearches are not reconciled and their cost is not recorded while no operator
            runs (nothing is lost: it resumes from what the API server holds).
      - alert: IACOperatorNoLeader
        expr: (sum(max by (instance) (iac_operator_leader)) < 1) and on () (count(up{job="{{ $job }}"} == 1) > 0)
        for: {{ $p.operatorDownFor }}
        labels:
          severity: critical
          {{- with $extra }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: The iac-operator replicas run but none has held the leader lease for {{ $p.operatorDownFor }}
          description: >-
            Only the leader reconciles. Check the operator's logs and its RBAC on
            coordination.k8s.io leases in its namespace.
      - alert: IACOperatorReconcileErrors
        expr: sum(rate(iac_operator_reconcile_total{result="error"}[15m])) > 0
        for: 15m
        labels:
          severity: warning
          {{- with $extra }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: "iac-operator reconciles have been failing for 15m ({{`{{ printf \"%.2f\" $value }}`}} errors/s)"
          description: The operator's logs name the search and the error of each failed reconcile.
{{- end }}
