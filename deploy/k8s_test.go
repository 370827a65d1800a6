package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/compose-spec/compose-go/v2/types"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// k8sDir holds the manifests TestK8s checks.
var k8sDir = filepath.Join(repoRoot, "deploy", "k8s")

const (
	// chartValues is the NATS Helm chart's values file, under the
	// manifests' directory but not a manifest.
	chartValues = "nats/values.yaml"
	// exampleSecrets lists, with placeholders, every Secret the manifests
	// and the chart values refer to.
	exampleSecrets = "examples/secrets.example.yaml"
)

// k8sScheme knows the API types the manifests may use; anything else (a
// misspelt kind, a retired apiVersion) is an error.
var k8sScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// manifest is one decoded document of a manifest file.
type manifest struct {
	where string // "procurement.yaml#1 Deployment furrow/procurement"
	file  string // relative to the manifests' directory
	obj   runtime.Object
	meta  metav1.Object
}

// decodeManifests decodes every document of every YAML file under dir
// (but the chart values) strictly into the k8s.io/api type its apiVersion
// and kind name: an unknown or duplicated field is an error.
func decodeManifests(dir string) ([]manifest, []string) {
	var out []manifest
	var problems []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == chartValues || (path.Ext(rel) != ".yaml" && path.Ext(rel) != ".yml") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for i := 1; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", rel, err))
				break
			}
			if js, err := yaml.YAMLToJSON(doc); err == nil && string(js) == "null" {
				continue // comments only
			}
			where := fmt.Sprintf("%s#%d", rel, i)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
			obj, err := k8sScheme.New(gvk)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: apiVersion %q kind %q is not an API type these manifests may use: %v", where, tm.APIVersion, tm.Kind, err))
				continue
			}
			// As the API server decodes: case-sensitive field names, and
			// unknown or duplicated fields are errors (with their paths).
			js, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s (%s): %v", where, tm.Kind, err))
				continue
			}
			strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s (%s): %v", where, tm.Kind, err))
				continue
			}
			if len(strict) > 0 {
				for _, e := range strict {
					problems = append(problems, fmt.Sprintf("%s (%s): %v", where, tm.Kind, e))
				}
				continue
			}
			meta, ok := obj.(metav1.Object)
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: %s has no metadata", where, tm.Kind))
				continue
			}
			out = append(out, manifest{
				where: fmt.Sprintf("%s %s %s/%s", where, tm.Kind, meta.GetNamespace(), meta.GetName()),
				file:  rel, obj: obj, meta: meta,
			})
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err.Error())
	}
	return out, problems
}

// podTemplate is a pod a manifest runs: a Deployment's or a Job's.
type podTemplate struct {
	where     string
	namespace string
	name      string // the Deployment's or Job's
	labels    map[string]string
	spec      corev1.PodSpec
}

// k8sReport is what checkK8s found.
type k8sReport struct {
	problems []string
	checked  []string // "Deployment procurement", …: workloads whose containers were checked
	pending  []string
}

// checkK8s decodes the manifests under dir strictly and checks them
// against the binaries and each other:
//   - each container of Furrow's image runs a command the image has, with
//     flags and FURROW_* variables its binary reads (checkFurrowCommand);
//   - every probe targets a port the container declares; a service's
//     readiness is /readyz and liveness /healthz on the port of its
//     --ops-addr, and its gRPC port is that of --grpc-addr;
//   - containers run as non-root, read-only, without privilege escalation
//     or capabilities, with resource requests and a memory limit;
//   - selectors of Deployments, Services, PodDisruptionBudgets and
//     NetworkPolicies select the pods they are meant for; each Deployment
//     has a PodDisruptionBudget; a Service's target ports are declared;
//   - every Secret and key a manifest or the chart values refer to is in
//     the example Secrets, and a file path a container is given inside a
//     mounted Secret is one of its keys;
//   - the NATS URLs are the chart's pods (chartValues), and each service
//     runs the command and sets the FURROW_* variables its counterpart in
//     docker-compose.yml does.
func checkK8s(t testing.TB, dir string) k8sReport {
	t.Helper()
	manifests, problems := decodeManifests(dir)
	rep := k8sReport{problems: problems}
	bad := func(where, format string, args ...any) {
		rep.problems = append(rep.problems, where+": "+fmt.Sprintf(format, args...))
	}

	secrets := map[string]*corev1.Secret{} // namespace/name, from the examples
	var pods []podTemplate
	var services []*corev1.Service
	var pdbs []*policyv1.PodDisruptionBudget
	var policies []*networkingv1.NetworkPolicy
	for _, m := range manifests {
		if _, ok := m.obj.(*corev1.Namespace); !ok && m.meta.GetNamespace() == "" {
			bad(m.where, "no metadata.namespace: kubectl apply would put it in the current namespace")
		}
		if m.file == exampleSecrets {
			s, ok := m.obj.(*corev1.Secret)
			if !ok {
				bad(m.where, "%s holds only Secrets", exampleSecrets)
				continue
			}
			secrets[s.Namespace+"/"+s.Name] = s
			continue
		}
		switch o := m.obj.(type) {
		case *corev1.Secret:
			bad(m.where, "a Secret among the manifests: commit no secret values (%s lists them with placeholders)", exampleSecrets)
		case *appsv1.Deployment:
			sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(labels.Set(o.Spec.Template.Labels)) {
				bad(m.where, "spec.selector %v does not select the pod template's labels %v", o.Spec.Selector, o.Spec.Template.Labels)
			}
			pods = append(pods, podTemplate{m.where, o.Namespace, "Deployment " + o.Name, o.Spec.Template.Labels, o.Spec.Template.Spec})
		case *batchv1.Job:
			pods = append(pods, podTemplate{m.where, o.Namespace, "Job " + o.Name, o.Spec.Template.Labels, o.Spec.Template.Spec})
		case *corev1.Service:
			services = append(services, o)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, o)
		case *networkingv1.NetworkPolicy:
			policies = append(policies, o)
		}
	}
	if len(secrets) == 0 {
		bad(exampleSecrets, "no Secret found")
	}
	checkSecretRef := func(where, ns, name, key string) {
		s, ok := secrets[ns+"/"+name]
		switch {
		case !ok:
			bad(where, "refers to Secret %s/%s, which %s does not list", ns, name, exampleSecrets)
		case key != "":
			if _, ok := s.StringData[key]; !ok {
				if _, ok := s.Data[key]; !ok {
					bad(where, "Secret %s has no key %s (%s lists %v)", name, key, exampleSecrets, sortedKeys(s.StringData))
				}
			}
		}
	}

	natsURLs, monitorURLs, chartProblems := chartNATSURLs(dir)
	rep.problems = append(rep.problems, chartProblems...)
	for _, v := range chartSecretRefs(dir) {
		checkSecretRef(chartValues, "nats", v[0], v[1])
	}
	compose, _ := loadCompose(composeFile)

	selects := func(sel *metav1.LabelSelector, ns string) []podTemplate {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return nil
		}
		var out []podTemplate
		for _, p := range pods {
			if p.namespace == ns && s.Matches(labels.Set(p.labels)) {
				out = append(out, p)
			}
		}
		return out
	}
	podNamespaces := map[string]bool{}
	for _, p := range pods {
		podNamespaces[p.namespace] = true
	}

	for _, p := range pods {
		rep.checked = append(rep.checked, p.name)
		volumes := map[string]corev1.Volume{}
		for _, v := range p.spec.Volumes {
			volumes[v.Name] = v
			if v.Secret != nil {
				checkSecretRef(p.where+" volume "+v.Name, p.namespace, v.Secret.SecretName, "")
			}
		}
		podNonRoot := p.spec.SecurityContext != nil && p.spec.SecurityContext.RunAsNonRoot != nil && *p.spec.SecurityContext.RunAsNonRoot
		for _, c := range p.spec.Containers {
			where := fmt.Sprintf("%s container %s", p.where, c.Name)
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					checkSecretRef(where+" env "+e.Name, p.namespace, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					checkSecretRef(where+" envFrom", p.namespace, e.SecretRef.Name, "")
				}
			}
			checkContainerSecurity(where, c, podNonRoot, bad)

			ports := map[string]int32{}
			numbers := map[int32]bool{}
			for _, cp := range c.Ports {
				ports[cp.Name] = cp.ContainerPort
				numbers[cp.ContainerPort] = true
			}
			probePort := func(kind string, pr *corev1.Probe) int32 {
				if pr == nil {
					return 0
				}
				var port intstr.IntOrString
				switch {
				case pr.HTTPGet != nil:
					port = pr.HTTPGet.Port
				case pr.TCPSocket != nil:
					port = pr.TCPSocket.Port
				case pr.GRPC != nil:
					port = intstr.FromInt32(pr.GRPC.Port)
				default:
					return 0
				}
				if port.Type == intstr.String {
					n, ok := ports[port.StrVal]
					if !ok {
						bad(where, "the %s probe targets port %s, which the container does not declare (ports: %v)", kind, port.StrVal, sortedKeys(ports))
					}
					return n
				}
				if !numbers[port.IntVal] {
					bad(where, "the %s probe targets port %d, which the container does not declare", kind, port.IntVal)
				}
				return port.IntVal
			}
			live, ready := probePort("liveness", c.LivenessProbe), probePort("readiness", c.ReadinessProbe)
			probePort("startup", c.StartupProbe)

			if !isFurrowImage(c.Image) {
				continue
			}
			argv := append(slices.Clone(c.Command), c.Args...)
			spec, settings, ps, pending := checkFurrowCommand(t, invocation{where: where, argv: argv, env: env})
			rep.problems = append(rep.problems, ps...)
			if pending != "" {
				rep.pending = append(rep.pending, pending)
			}

			// Paths inside a mounted Secret must be keys of it.
			for _, vm := range c.VolumeMounts {
				v, ok := volumes[vm.Name]
				if !ok {
					bad(where, "mounts volume %s, which the pod does not have", vm.Name)
					continue
				}
				if v.Secret == nil {
					continue
				}
				for _, val := range append(slices.Collect(mapValues(env)), argv...) {
					if rel, ok := strings.CutPrefix(val, strings.TrimSuffix(vm.MountPath, "/")+"/"); ok {
						checkSecretRef(fmt.Sprintf("%s: %s (Secret volume %s at %s)", where, val, vm.Name, vm.MountPath), p.namespace, v.Secret.SecretName, rel)
					}
				}
			}

			if compose != nil {
				if _, ok := compose.Services[c.Name]; ok {
					checkComposeParity(where, compose, c.Name, argv, env, bad)
				} else if spec != nil && spec.flags["ops-addr"] {
					bad(where, "docker-compose.yml has no service %s to compare with", c.Name)
				}
			} else {
				bad(where, "docker-compose.yml does not load, so the manifests cannot be compared with it")
			}
			if spec == nil {
				continue
			}
			if got, ok := settings["nats-url"]; ok && got != natsURLs {
				bad(where, "NATS URLs %q are not the chart's pods (%s): want %q", got, chartValues, natsURLs)
			}
			if got, ok := env["FURROW_NATS_MONITOR_URL"]; ok && got != monitorURLs {
				bad(where, "NATS monitoring URLs %q are not the chart's pods (%s): want %q", got, chartValues, monitorURLs)
			}
			if _, ok := spec.flags["ops-addr"]; !ok {
				continue
			}
			// A service: probes on its ops listener, gRPC declared.
			ops, _ := strconv.Atoi(listenPort(settings["ops-addr"]))
			switch {
			case c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz":
				bad(where, "no readiness probe GET /readyz")
			case ready != int32(ops):
				bad(where, "the readiness probe targets port %d, but --ops-addr is %q", ready, settings["ops-addr"])
			}
			switch {
			case c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz":
				bad(where, "no liveness probe GET /healthz")
			case live != int32(ops):
				bad(where, "the liveness probe targets port %d, but --ops-addr is %q", live, settings["ops-addr"])
			}
			if grpc, _ := strconv.Atoi(listenPort(settings["grpc-addr"])); !numbers[int32(grpc)] {
				bad(where, "--grpc-addr is %q, but the container declares no port %d", settings["grpc-addr"], grpc)
			}
		}
	}

	for _, s := range services {
		where := fmt.Sprintf("Service %s/%s", s.Namespace, s.Name)
		selected := selects(&metav1.LabelSelector{MatchLabels: s.Spec.Selector}, s.Namespace)
		if len(s.Spec.Selector) == 0 || len(selected) == 0 {
			bad(where, "its selector %v selects no pod of these manifests", s.Spec.Selector)
			continue
		}
		for _, sp := range s.Spec.Ports {
			tp := sp.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(sp.Port)
			}
			for _, p := range selected {
				if !declaresPort(p.spec, tp) {
					bad(where, "port %s targets %s, which %s does not declare", sp.Name, tp.String(), p.name)
				}
			}
		}
	}
	for _, p := range pods {
		if !strings.HasPrefix(p.name, "Deployment ") {
			continue
		}
		covered := false
		for _, b := range pdbs {
			if b.Namespace == p.namespace && slices.ContainsFunc(selects(b.Spec.Selector, b.Namespace), func(q podTemplate) bool { return q.name == p.name }) {
				covered = true
			}
		}
		if !covered {
			bad(p.where, "no PodDisruptionBudget selects its pods")
		}
	}
	for _, b := range pdbs {
		if len(selects(b.Spec.Selector, b.Namespace)) == 0 {
			bad(fmt.Sprintf("PodDisruptionBudget %s/%s", b.Namespace, b.Name), "its selector selects no pod of these manifests")
		}
	}
	for _, np := range policies {
		if !podNamespaces[np.Namespace] || len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) == 0 {
			continue // another namespace's pods (the chart's), or all pods
		}
		if len(selects(&np.Spec.PodSelector, np.Namespace)) == 0 {
			bad(fmt.Sprintf("NetworkPolicy %s/%s", np.Namespace, np.Name), "its podSelector selects no pod of these manifests")
		}
	}
	return rep
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, k := range sortedKeys(m) {
			if !yield(m[k]) {
				return
			}
		}
	}
}

// isFurrowImage says whether an image reference is deploy/Dockerfile's
// image ("furrow:dev", "registry.example/team/furrow:1.2").
func isFurrowImage(image string) bool {
	name := image
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	return path.Base(name) == "furrow"
}

func declaresPort(spec corev1.PodSpec, port intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		for _, cp := range c.Ports {
			if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
				return true
			}
		}
	}
	return false
}

// checkContainerSecurity wants what the restricted Pod Security Standard
// and a read-only image need.
func checkContainerSecurity(where string, c corev1.Container, podNonRoot bool, bad func(string, string, ...any)) {
	sc := c.SecurityContext
	if sc == nil {
		bad(where, "no securityContext")
		return
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad(where, "securityContext.readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		bad(where, "securityContext.allowPrivilegeEscalation is not false")
	}
	if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
		bad(where, "runAsNonRoot is not true for the container or its pod")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		bad(where, "securityContext.capabilities does not drop ALL")
	}
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		bad(where, "no CPU request")
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		bad(where, "no memory request")
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		bad(where, "no memory limit")
	}
}

// checkComposeParity wants a container to run the command its namesake
// service in docker-compose.yml runs (binary and subcommand; flags may
// differ), with the same FURROW_* variables (values differ: secrets,
// addresses).
func checkComposeParity(where string, compose *types.Project, service string, argv []string, env map[string]string, bad func(string, string, ...any)) {
	svc := compose.Services[service]
	if got, want := commandWords(argv), commandWords(append(slices.Clone([]string(svc.Entrypoint)), svc.Command...)); !slices.Equal(got, want) {
		bad(where, "runs %q, docker-compose.yml's %s runs %q", strings.Join(got, " "), service, strings.Join(want, " "))
	}
	for _, k := range sortedKeys(svc.Environment) {
		if _, ok := env[k]; strings.HasPrefix(k, "FURROW_") && !ok {
			bad(where, "docker-compose.yml gives %s %s, these manifests do not", service, k)
		}
	}
	for _, k := range sortedKeys(env) {
		if _, ok := svc.Environment[k]; strings.HasPrefix(k, "FURROW_") && !ok {
			bad(where, "sets %s, which docker-compose.yml does not give %s", k, service)
		}
	}
}

// commandWords is the binary's name and the subcommand words after it.
func commandWords(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	words := []string{path.Base(argv[0])}
	for _, a := range argv[1:] {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	return words
}

// chartValuesMap reads the chart values under dir.
func chartValuesMap(dir string) (map[string]any, error) {
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(chartValues)))
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", chartValues, err)
	}
	return v, nil
}

// lookup follows keys through nested maps.
func lookup(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// chartNATSURLs returns the client and monitoring URLs of the NATS pods the
// chart makes with the values under dir (fullnameOverride, namespaceOverride
// and the cluster's replicas), as comma-separated lists.
func chartNATSURLs(dir string) (client, monitor string, problems []string) {
	v, err := chartValuesMap(dir)
	if err != nil {
		return "", "", []string{err.Error()}
	}
	name, _ := lookup(v, "fullnameOverride").(string)
	ns, _ := lookup(v, "namespaceOverride").(string)
	replicas, _ := lookup(v, "config", "cluster", "replicas").(float64)
	port, _ := lookup(v, "config", "monitor", "port").(float64)
	if name == "" || ns == "" || replicas == 0 || port == 0 {
		return "", "", []string{fmt.Sprintf("%s: want fullnameOverride, namespaceOverride, config.cluster.replicas and config.monitor.port set (the names the manifests use)", chartValues)}
	}
	var c, m []string
	for i := range int(replicas) {
		host := fmt.Sprintf("%s-%d.%s-headless.%s.svc.cluster.local", name, i, name, ns)
		c = append(c, "nats://"+host+":4222")
		m = append(m, fmt.Sprintf("http://%s:%d", host, int(port)))
	}
	return strings.Join(c, ","), strings.Join(m, ","), nil
}

// chartSecretRefs returns the Secrets (name, key) the chart values refer
// to: the NATS container's variables and the TLS secrets.
func chartSecretRefs(dir string) [][2]string {
	v, err := chartValuesMap(dir)
	if err != nil {
		return nil
	}
	var refs [][2]string
	env, _ := lookup(v, "container", "env").(map[string]any)
	for _, k := range sortedKeys(env) {
		name, _ := lookup(env[k], "valueFrom", "secretKeyRef", "name").(string)
		key, _ := lookup(env[k], "valueFrom", "secretKeyRef", "key").(string)
		if name != "" {
			refs = append(refs, [2]string{name, key})
		}
	}
	if s, _ := lookup(v, "config", "cluster", "tls", "secretName").(string); s != "" {
		refs = append(refs, [2]string{s, "tls.crt"}, [2]string{s, "tls.key"})
	}
	if s, _ := lookup(v, "tlsCA", "secretName").(string); s != "" {
		key, _ := lookup(v, "tlsCA", "key").(string)
		refs = append(refs, [2]string{s, key})
	}
	return refs
}

// TestK8s checks the manifests in deploy/k8s (see checkK8s).
func TestK8s(t *testing.T) {
	t.Parallel()
	rep := checkK8s(t, k8sDir)
	for _, p := range rep.problems {
		t.Error(p)
	}
	skipPending(t, rep.pending)
	for _, want := range []string{"Deployment brand-incubation", "Deployment farmer-ledger", "Deployment procurement", "Job furrow-streams-apply"} {
		if !slices.Contains(rep.checked, want) {
			t.Errorf("did not check the containers of %s (checked %v)", want, rep.checked)
		}
	}
}

var goModVersion = regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\S+)`)

// TestNATSChartValues checks the values for the official NATS chart: a
// 3-node JetStream cluster on files that fsyncs every write, Furrow's
// users and permissions included from deploy/nats/accounts.conf with
// every variable that file uses set, and the nats-server version the
// tests run against.
func TestNATSChartValues(t *testing.T) {
	t.Parallel()
	v, err := chartValuesMap(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		keys []string
		want any
	}{
		{[]string{"config", "cluster", "enabled"}, true},
		{[]string{"config", "cluster", "replicas"}, float64(3)},
		{[]string{"config", "cluster", "tls", "enabled"}, true},
		{[]string{"config", "jetstream", "enabled"}, true},
		{[]string{"config", "jetstream", "fileStore", "enabled"}, true},
		{[]string{"config", "jetstream", "fileStore", "pvc", "enabled"}, true},
		{[]string{"config", "jetstream", "memoryStore", "enabled"}, false},
		{[]string{"config", "jetstream", "merge", "sync_interval"}, "always"},
		{[]string{"config", "monitor", "enabled"}, true},
	} {
		if got := lookup(v, c.keys...); got != c.want {
			t.Errorf("%s: %s = %v, want %v", chartValues, strings.Join(c.keys, "."), got, c.want)
		}
	}

	merge, _ := lookup(v, "config", "merge").(map[string]any)
	includes := false
	for k, val := range merge {
		includes = includes || (strings.HasSuffix(k, "$include") && val == "accounts.conf")
	}
	if !includes {
		t.Errorf("%s: config.merge includes no accounts.conf (want a key ending in $include: accounts.conf)", chartValues)
	}

	used, err := natsConfigVariables(filepath.Join(repoRoot, "deploy", "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(used) == 0 {
		t.Fatal("deploy/nats/accounts.conf uses no variable: has its syntax changed?")
	}
	env, _ := lookup(v, "container", "env").(map[string]any)
	for _, name := range sortedKeys(used) {
		if _, ok := env[name]; !ok {
			t.Errorf("%s: container.env does not set %s, which deploy/nats/accounts.conf uses", chartValues, name)
		}
	}

	gomod, err := os.ReadFile(filepath.Join(repoRoot, "pkg", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := goModVersion.FindSubmatch(gomod)
	if m == nil {
		t.Fatal("pkg/go.mod does not require github.com/nats-io/nats-server/v2")
	}
	if tag, _ := lookup(v, "container", "image", "tag").(string); !strings.HasPrefix(tag, string(m[1])+"-") && tag != string(m[1]) {
		t.Errorf("%s: container.image.tag %q is not the nats-server version pkg/go.mod pins (%s), which the tests run against", chartValues, tag, m[1])
	}
}

// TestK8sCheckFailsOnBrokenCopies is the proof that TestK8s can fail: each
// case breaks one file of a copy of deploy/k8s and the check must name
// what is wrong.
func TestK8sCheckFailsOnBrokenCopies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, file, old, new string
		want                 string
	}{
		{"misspelt field", "procurement.yaml", "          readinessProbe:", "          readynessProbe:",
			`procurement.yaml#1 (Deployment): unknown field "spec.template.spec.containers[0].readynessProbe"`},
		{"field in the wrong case", "streams-apply-job.yaml", "  backoffLimit: 6", "  BackoffLimit: 6",
			`streams-apply-job.yaml#1 (Job): unknown field "spec.BackoffLimit"`},
		{"duplicate field", "farmer-ledger.yaml", "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n",
			`key "replicas" already set in map`},
		{"misspelt nested field", "networkpolicies.yaml", "        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: platform",
			"        - namespaceSelector:\n            matchLabel:\n              kubernetes.io/metadata.name: platform",
			`networkpolicies.yaml#2 (NetworkPolicy): unknown field "spec.ingress[0].from[0].namespaceSelector.matchLabel"`},
		{"unknown kind", "procurement.yaml", "apiVersion: policy/v1\n", "apiVersion: policy/v1beta3\n",
			`apiVersion "policy/v1beta3" kind "PodDisruptionBudget" is not an API type`},
		{"misspelt flag", "farmer-ledger.yaml", `command: ["/usr/local/bin/farmer-ledger"]`, `command: ["/usr/local/bin/farmer-ledger", "--payment-provder", "simulated"]`,
			"container farmer-ledger: farmer-ledger has no flag -payment-provder"},
		{"misspelt variable", "brand-incubation.yaml", "- name: FURROW_TLS_CLIENT_CA", "- name: FURROW_TLS_CLIENTCA",
			"container brand-incubation: brand-incubation does not read FURROW_TLS_CLIENTCA"},
		{"undeclared probe port", "procurement.yaml", "              path: /healthz\n              port: ops", "              path: /healthz\n              port: metrics",
			"the liveness probe targets port metrics, which the container does not declare"},
		{"probe off the ops port", "brand-incubation.yaml", "- name: FURROW_OPS_ADDR\n              value: \":9090\"", "- name: FURROW_OPS_ADDR\n              value: \":9091\"",
			`the readiness probe targets port 9090, but --ops-addr is ":9091"`},
		{"missing secret key", "procurement.yaml", "key: dsn", "key: url",
			"env FURROW_POSTGRES_DSN: Secret procurement-postgres has no key url"},
		{"secret path", "farmer-ledger.yaml", "value: /certs/tls.key", "value: /certs/server.key",
			"/certs/server.key (Secret volume grpc-tls at /certs): Secret farmer-ledger-grpc-tls has no key server.key"},
		{"selector", "procurement.yaml", "  selector:\n    app.kubernetes.io/name: procurement\n  ports:", "  selector:\n    app.kubernetes.io/name: procuremnt\n  ports:",
			"Service furrow/procurement: its selector map[app.kubernetes.io/name:procuremnt] selects no pod"},
		{"compose parity: command", "procurement.yaml", `command: ["/usr/local/bin/procurement"]`, `command: ["/usr/local/bin/brand-incubation"]`,
			`container procurement: runs "brand-incubation", docker-compose.yml's procurement runs "procurement"`},
		{"compose parity", "farmer-ledger.yaml", "            - name: FURROW_STREAM_REPLICAS\n              value: \"3\"\n", "",
			"docker-compose.yml gives farmer-ledger FURROW_STREAM_REPLICAS, these manifests do not"},
		{"NATS URL", "procurement.yaml", "nats://nats-2.nats-headless", "nats://nats-3.nats-headless",
			"are not the chart's pods"},
		{"writable root", "brand-incubation.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false",
			"securityContext.readOnlyRootFilesystem is not true"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(k8sDir)); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, c.file)
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), c.old) {
				t.Fatalf("%s no longer contains %q: update this case", c.file, c.old)
			}
			if err := os.WriteFile(f, []byte(strings.Replace(string(b), c.old, c.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			rep := checkK8s(t, dir)
			for _, p := range rep.problems {
				if strings.Contains(p, c.want) {
					t.Logf("fails as it should: %s", p)
					return
				}
			}
			t.Errorf("no problem contains %q; got:\n%s", c.want, strings.Join(rep.problems, "\n"))
		})
	}
}
