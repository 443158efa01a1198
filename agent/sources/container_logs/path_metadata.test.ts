import { describe, it, expect } from 'vitest';
import { resourceFromPaths } from './path_metadata.ts';

const ID = '3f4e2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f';
const UID = '0b8f0e5c-6a63-4c9f-9a3c-2d1c3e9f8a71';
const POD = 'web-7d9f8b6c5d-x2x9k';
const LINK = `/var/log/containers/${POD}_shop_nginx-${ID}.log`;
const TARGET = `/var/log/pods/shop_${POD}_${UID}/nginx/0.log`;

const FULL = {
  'k8s.node.name': 'node-1',
  'k8s.namespace.name': 'shop',
  'k8s.pod.name': POD,
  'k8s.pod.uid': UID,
  'k8s.container.name': 'nginx',
  'k8s.container.restart_count': '0',
  'container.id': ID,
};

/** The symlink name kubelet makes: base name, `.log` included, cut to 255 bytes. */
function kubeletLink(pod: string, namespace: string, container: string, id: string): string {
  const name = `${pod}_${namespace}_${container}-${id}`;
  return `/var/log/containers/${name.slice(0, 251)}.log`;
}

describe('resourceFromPaths', () => {
  it('takes identity from the target and the container id from the symlink', () => {
    expect(resourceFromPaths(LINK, TARGET, 'node-1')).toEqual(FULL);
  });

  it('reads the restart count of rotated and compressed files', () => {
    const dir = `/var/log/pods/shop_${POD}_${UID}/nginx/`;
    for (const file of ['3.log.20261121-100000', '3.log.20261121-100000.gz', '3.log']) {
      expect(resourceFromPaths(LINK, dir + file, 'node-1')).toEqual({ ...FULL, 'k8s.container.restart_count': '3' });
    }
  });

  it('uses the symlink names when there is no target', () => {
    expect(resourceFromPaths(LINK, undefined, 'node-1')).toEqual({
      'k8s.node.name': 'node-1',
      'k8s.namespace.name': 'shop',
      'k8s.pod.name': POD,
      'k8s.container.name': 'nginx',
      'container.id': ID,
    });
  });

  it('reads a pods-layout path found without a symlink', () => {
    expect(resourceFromPaths(TARGET, undefined, 'node-1')).toEqual({
      'k8s.node.name': 'node-1',
      'k8s.namespace.name': 'shop',
      'k8s.pod.name': POD,
      'k8s.pod.uid': UID,
      'k8s.container.name': 'nginx',
      'k8s.container.restart_count': '0',
    });
  });

  it('accepts a custom pod logs root', () => {
    expect(resourceFromPaths(LINK, `/data/kubelet/pods/shop_${POD}_${UID}/nginx/0.log`, 'node-1')).toEqual(FULL);
  });

  it('keeps the 32-hex config hash of a static pod as its uid', () => {
    const hash = '9f3e7b1c2d4a5e6f708192a3b4c5d6e7';
    const link = `/var/log/containers/kube-apiserver-node-1_kube-system_kube-apiserver-${ID}.log`;
    const target = `/var/log/pods/kube-system_kube-apiserver-node-1_${hash}/kube-apiserver/2.log`;
    expect(resourceFromPaths(link, target, 'node-1')).toEqual({
      'k8s.node.name': 'node-1',
      'k8s.namespace.name': 'kube-system',
      'k8s.pod.name': 'kube-apiserver-node-1',
      'k8s.pod.uid': hash,
      'k8s.container.name': 'kube-apiserver',
      'k8s.container.restart_count': '2',
      'container.id': ID,
    });
  });

  it('falls back to the symlink for a docker json-file target', () => {
    const target = `/var/lib/docker/containers/${ID}/${ID}-json.log`;
    expect(resourceFromPaths(LINK, target, 'node-1')).toEqual({
      'k8s.node.name': 'node-1',
      'k8s.namespace.name': 'shop',
      'k8s.pod.name': POD,
      'k8s.container.name': 'nginx',
      'container.id': ID,
    });
  });

  describe('old layouts', () => {
    it('reads /var/log/pods/<uid>/<container>_<restart>.log, names from the symlink', () => {
      expect(resourceFromPaths(LINK, `/var/log/pods/${UID}/nginx_1.log`, 'node-1')).toEqual({
        ...FULL,
        'k8s.container.restart_count': '1',
      });
    });

    it('sets only what the path knows when there is no symlink', () => {
      expect(resourceFromPaths(`/var/log/pods/${UID}/nginx_4.log`, undefined, 'n')).toEqual({
        'k8s.node.name': 'n',
        'k8s.pod.uid': UID,
        'k8s.container.name': 'nginx',
        'k8s.container.restart_count': '4',
      });
      expect(resourceFromPaths(`/var/log/pods/${UID}/nginx/4.log`, undefined, 'n')).toEqual({
        'k8s.node.name': 'n',
        'k8s.pod.uid': UID,
        'k8s.container.name': 'nginx',
        'k8s.container.restart_count': '4',
      });
    });
  });

  describe('truncated symlink names', () => {
    const ns = 'team-' + 'n'.repeat(40);
    const container = 'sidecar-' + 'c'.repeat(40);

    it('builds names the way kubelet does', () => {
      const link = kubeletLink('p'.repeat(150), ns, container, ID);
      expect(Buffer.byteLength(link.slice(link.lastIndexOf('/') + 1))).toBe(255);
    });

    it('drops a container id cut short, taking identity from the target', () => {
      const pod = 'api-' + 'p'.repeat(140);
      const link = kubeletLink(pod, ns, container, ID);
      expect(link).toContain(`_${container}-3f4e`);
      expect(link).not.toContain(ID);
      const target = `/var/log/pods/${ns}_${pod}_${UID}/${container}/0.log`;
      expect(resourceFromPaths(link, target, 'node-1')).toEqual({
        'k8s.node.name': 'node-1',
        'k8s.namespace.name': ns,
        'k8s.pod.name': pod,
        'k8s.pod.uid': UID,
        'k8s.container.name': container,
        'k8s.container.restart_count': '0',
      });
    });

    it('keeps only the names an underscore proves whole when there is no target', () => {
      // Cut inside the id: pod and namespace are whole, the container name cannot be told apart.
      const idCut = kubeletLink('api-' + 'p'.repeat(140), ns, container, ID);
      expect(resourceFromPaths(idCut, undefined, 'node-1')).toEqual({
        'k8s.node.name': 'node-1',
        'k8s.namespace.name': ns,
        'k8s.pod.name': 'api-' + 'p'.repeat(140),
      });
      // Cut inside the container name: its last dash must not be read as an id separator.
      const containerCut = kubeletLink('p'.repeat(190), ns, container, ID);
      expect(containerCut).not.toContain(container);
      expect(resourceFromPaths(containerCut, undefined, 'node-1')).toEqual({
        'k8s.node.name': 'node-1',
        'k8s.namespace.name': ns,
        'k8s.pod.name': 'p'.repeat(190),
      });
      // Cut inside the namespace: only the pod is whole.
      const nsCut = kubeletLink('p'.repeat(230), ns, container, ID);
      expect(resourceFromPaths(nsCut, undefined, 'node-1')).toEqual({
        'k8s.node.name': 'node-1',
        'k8s.pod.name': 'p'.repeat(230),
      });
    });

    it('trusts a 255-byte name whose id is whole', () => {
      const pod = 'p'.repeat(251 - 1 - ns.length - 1 - container.length - 1 - 64);
      const link = kubeletLink(pod, ns, container, ID);
      expect(Buffer.byteLength(link.slice(link.lastIndexOf('/') + 1))).toBe(255);
      expect(resourceFromPaths(link, undefined, 'node-1')).toEqual({
        'k8s.node.name': 'node-1',
        'k8s.namespace.name': ns,
        'k8s.pod.name': pod,
        'k8s.container.name': container,
        'container.id': ID,
      });
    });

    it('takes the id from a docker target when the symlink lost it', () => {
      const link = kubeletLink('api-' + 'p'.repeat(140), ns, container, ID);
      expect(resourceFromPaths(link, `/var/lib/docker/containers/${ID}/${ID}-json.log.1`, 'node-1')).toEqual({
        'k8s.node.name': 'node-1',
        'k8s.namespace.name': ns,
        'k8s.pod.name': 'api-' + 'p'.repeat(140),
        'container.id': ID,
      });
    });
  });

  it('omits a container id that is not 64 lowercase hex', () => {
    const upper = `/var/log/containers/${POD}_shop_nginx-${ID.toUpperCase()}.log`;
    const short = `/var/log/containers/${POD}_shop_nginx-3f4e2a1b.log`;
    for (const link of [upper, short]) {
      expect(resourceFromPaths(link, TARGET, 'node-1')).toEqual({ ...FULL, 'container.id': undefined });
      expect('container.id' in resourceFromPaths(link, TARGET, 'node-1')).toBe(false);
    }
  });

  it('emits no empty strings and nothing for unknown paths', () => {
    expect(resourceFromPaths('/tmp/app.log', undefined, 'node-1')).toEqual({ 'k8s.node.name': 'node-1' });
    expect(resourceFromPaths('/tmp/app.log', '/tmp/other/0.log', '')).toEqual({});
    expect(resourceFromPaths('/var/log/containers/_shop_nginx-x.log', '/var/log/pods/a__c/d/0.log', '')).toEqual({});
    expect(resourceFromPaths('/var/log/containers/a_b_c_d-x.log', '/var/log/pods/x/nginx/0.log', '')).toEqual({});
  });
});
