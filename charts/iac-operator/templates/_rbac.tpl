{{/*
Where the operator works and what it may do there (docs/rbac.md). Two modes:

  namespaced (the default): the operator runs with --namespaces=<list> and gets a Role
    and RoleBinding in each of those namespaces, nothing cluster-wide. The list is
    watchNamespaces, or the release namespace alone when watchNamespaces is empty.
  cluster-wide (rbac.clusterWide=true, chosen explicitly): the operator watches every
    namespace and its rights are one ClusterRole, which lets it read every Secret and
    Pod in the cluster, kube-system's included.

The Lease of leader election is in the release namespace in both modes.
*/}}

{{/* The watched namespaces, comma-separated (the value of --namespaces); empty in cluster-wide mode. */}}
{{- define "iac-operator.watchNamespaces" -}}
{{- if .Values.rbac.clusterWide }}
{{- if .Values.watchNamespaces }}
{{- fail "rbac.clusterWide=true watches every namespace, so watchNamespaces must be empty: set one or the other (docs/rbac.md)" }}
{{- end }}
{{- else }}
{{- join "," (uniq (default (list .Release.Namespace) .Values.watchNamespaces)) }}
{{- end }}
{{- end }}

{{/*
The operator's rights on the objects it manages, in a Role per watched namespace or in the
ClusterRole: exactly the verbs its code uses (operator/src/controller, operator/src/k8s),
listed with their reasons in docs/rbac.md; test/packaging/rbac.test.ts checks all three agree.
*/}}
{{- define "iac-operator.searchRules" -}}
# Informers list and watch the searches; ttlSecondsAfterFinished deletes a finished one.
# An IACSearchSet creates its children, patches their spec.suspend (maxParallel, budget)
# and, orphaning one, its label and owner reference; it deletes removed children.
- apiGroups: ["nas.iac.dev"]
  resources: ["iacsearches"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# The status: one JSON merge patch of the status subresource per change.
- apiGroups: ["nas.iac.dev"]
  resources: ["iacsearches/status"]
  verbs: ["patch"]
# Children carry blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement
# admission plugin allows only with update on the owner's finalizers. A custom resource
# serves no finalizers subresource, so this permits nothing else.
- apiGroups: ["nas.iac.dev"]
  resources: ["iacsearches/finalizers", "iacsearchsets/finalizers"]
  verbs: ["update"]
# Informers list and watch the sets; their status: one JSON merge patch per change.
# No get, update or patch of a set itself: the operator never writes its spec or metadata.
- apiGroups: ["nas.iac.dev"]
  resources: ["iacsearchsets"]
  verbs: ["list", "watch"]
- apiGroups: ["nas.iac.dev"]
  resources: ["iacsearchsets/status"]
  verbs: ["patch"]
# One pod per phase attempt: created, read back when a create answers 409, deleted on
# suspend, budget, deadline and duplicate attempts.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
# The progress-token Secret and the artifacts claim: created once, read back on 409;
# garbage collection removes them with their search.
- apiGroups: [""]
  resources: ["secrets", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create"]
# Events about searches; a repeat patches the first event's series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Leader election: the one Lease in the release namespace (create cannot be limited to a name). */}}
{{- define "iac-operator.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "iac-operator.leaseName" . | quote }}]
  verbs: ["get", "update"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
{{- end }}
