"""The Kubernetes manifests parse (yamllint) and have the properties a
production deployment of one connector per slot needs."""
import os
import subprocess
import unittest

import yaml

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.normpath(os.path.join(here, "..", ".."))
k8s = os.path.join(root, "deploy", "kubernetes")


def load(name):
    with open(os.path.join(k8s, name)) as f:
        return yaml.safe_load(f)


class DeployTest(unittest.TestCase):

    def test_yamllint(self):
        r = subprocess.run(["yamllint", "-c", os.path.join(k8s, ".yamllint"), "--strict", k8s],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_kustomization_lists_every_manifest(self):
        listed = set(load("kustomization.yaml")["resources"])
        present = {f for f in os.listdir(k8s) if f.endswith(".yaml") and f != "kustomization.yaml"}
        self.assertEqual(listed, present)

    def test_deployment(self):
        d = load("deployment.yaml")
        spec = d["spec"]
        self.assertEqual(spec["replicas"], 1, "one consumer per slot")
        self.assertEqual(spec["strategy"]["type"], "Recreate")
        pod = spec["template"]["spec"]
        self.assertGreaterEqual(pod["terminationGracePeriodSeconds"], 60, "time to drain")
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        c = pod["containers"][0]
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertIn("memory", c["resources"]["limits"])
        self.assertIn("cpu", c["resources"]["requests"])
        self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
        self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
        self.assertEqual(c["envFrom"][0]["secretRef"]["name"], load("secret.yaml")["metadata"]["name"])
        port = c["ports"][0]["containerPort"]
        config = load("configmap.yaml")["data"]["outboxd.properties"]
        self.assertIn("http.listen = 0.0.0.0:%d" % port, config, "probes reach the listener")
        self.assertNotIn("password", config.lower(), "secrets live in the Secret")

    def test_service_selects_the_pod(self):
        svc = load("service.yaml")
        labels = load("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
        for k, v in svc["spec"]["selector"].items():
            self.assertEqual(labels[k], v)

    def test_alert_rules(self):
        rules = {r["alert"]: r for g in load("prometheus-rules.yaml")["spec"]["groups"]
                 for r in g["rules"]}
        self.assertIn("outboxd_slot_retained_wal_bytes", rules["OutboxdRetainedWalHigh"]["expr"])
        self.assertIn("outboxd_streaming", rules["OutboxdNotReady"]["expr"])
        self.assertIn("outboxd_lag_bytes", rules["OutboxdLagGrowing"]["expr"])
        with open(os.path.join(root, "docs", "runbook.md")) as f:
            runbook = f.read()
        for name in rules:
            self.assertIn(name, runbook, "every alert is explained in the runbook")

    def test_container_build(self):
        with open(os.path.join(root, "deploy", "Containerfile")) as f:
            text = f.read()
        stages = [l for l in text.splitlines() if l.startswith("FROM ")]
        self.assertEqual(len(stages), 2, "multi-stage")
        self.assertTrue(all("debian" in s for s in stages))
        final = text[text.rindex("\nFROM "):]
        self.assertNotIn("-dev", final, "only runtime libraries in the final image")
        self.assertRegex(final, r"\nUSER 10001")


if __name__ == "__main__":
    unittest.main(verbosity=2)
