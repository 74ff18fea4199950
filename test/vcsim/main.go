// Command vcsim starts VMware's vCenter simulator (govmomi, from Debian's sources) with the model
// Boomerang's tests use, on 127.0.0.1 and a port the OS chooses, and prints one JSON line
// {url, username, password, readOnlyUsername, readOnlyPassword, freeLicenseKey, certPem, thumbprint}
// when it is ready. SIGINT/SIGTERM stop it and remove its datastore directories.
//
// The model: datacenter DC0, hosts DC0_H0 and DC0_H1; VMFS datastore LocalDS_0 on both (read-write),
// NFS datastore nfs-ds on DC0_H0 (read-write), NFS 4.1 datastore nfs41-ds on DC0_H1 (read-only);
// two powered-on VMs per host, each with one 1 MiB disk on LocalDS_0 that has a UUID. VMware Tools
// run in the *_VM0 VMs (not in the *_VM1 ones); DC0_H0_VM0 has disk.EnableUUID=TRUE.
// Accounts (accounts.go): an administrator, and a read-only user who cannot see datastores and
// gets NoPermission on writes. Licences (licences.go): evaluation everywhere; a free ESXi licence
// can be assigned to a host with UpdateAssignedLicense.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/ioutil"
	"log"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// nasDatastore is one NFS-type datastore the model mounts on one host.
type nasDatastore struct {
	name, host, fsType, accessMode string
}

var nasDatastores = []nasDatastore{
	{"nfs-ds", "DC0_H0", string(types.HostFileSystemVolumeFileSystemTypeNFS), string(types.HostMountModeReadWrite)},
	{"nfs41-ds", "DC0_H1", string(types.HostFileSystemVolumeFileSystemTypeNFS41), string(types.HostMountModeReadOnly)},
}

func main() {
	model := simulator.VPX()
	model.Datacenter = 1
	model.Cluster = 0
	model.ClusterHost = 0
	model.Host = 2
	model.Datastore = 1
	model.Machine = 2
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	// Model datastores say OTHER; the one the model makes stands for a VMFS volume.
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		ds.Summary.Type = string(types.HostFileSystemVolumeFileSystemTypeVMFS)
	}
	configureVms()
	// vcsim 0.24 ignores maxObjects and has no ContinueRetrievePropertiesEx: page its results as
	// vCenter does, so clients' token handling is exercised.
	for _, ref := range []types.ManagedObjectReference{{Type: "PropertyCollector", Value: "propertyCollector"}} {
		simulator.Map.Put(&pagingCollector{PropertyCollector: simulator.PropertyCollector{PropertyCollector: mo.PropertyCollector{Self: ref}}})
	}
	installAuthorization(model.ServiceContent)
	installLicences(model.ServiceContent)
	model.Service.TLS = new(tls.Config)
	// Any non-empty user passes vcsim's own check; accounts.go refuses all but the model's accounts.
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0"}
	server := model.Service.NewServer()
	// Before any client connects (the ready line is not printed yet).
	server.Config.Handler = accountFilter(server.Config.Handler)

	nfsDir, err := ioutil.TempDir("", "boomerang-vcsim-nfs-")
	if err != nil {
		log.Fatal(err)
	}
	stop := func(code int) {
		server.Close()
		model.Remove()
		os.RemoveAll(nfsDir)
		os.Exit(code)
	}
	admin := *server.URL
	admin.User = url.UserPassword(adminUser.name, adminUser.password)
	if err := addNas(&admin, nfsDir); err != nil {
		log.Print(err)
		stop(1)
	}
	rebuildMounts()

	cert := server.Certificate()
	sum := sha1.Sum(cert.Raw)
	hexes := make([]string, len(sum))
	for i, b := range sum {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	u := *server.URL
	u.User = nil
	line, _ := json.Marshal(map[string]string{
		"url":              u.String(),
		"username":         adminUser.name,
		"password":         adminUser.password,
		"readOnlyUsername": readOnlyUser.name,
		"readOnlyPassword": readOnlyUser.password,
		"freeLicenseKey":   freeLicense.LicenseKey,
		"certPem":          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		"thumbprint":       strings.Join(hexes, ":"),
	})
	fmt.Println(string(line))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	stop(0)
}

// configureVms sets what vcsim leaves unset on the model VMs: guest tools state, a UUID on every
// disk (as ESXi gives one to each VMDK), and disk.EnableUUID on one VM.
func configureVms() {
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		if strings.HasSuffix(vm.Name, "_VM0") {
			vm.Guest.ToolsRunningStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
			vm.Guest.ToolsStatus = types.VirtualMachineToolsStatusToolsOk
		} else {
			vm.Guest.ToolsRunningStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)
			vm.Guest.ToolsStatus = types.VirtualMachineToolsStatusToolsNotRunning
		}
		if vm.Name == "DC0_H0_VM0" {
			vm.Config.ExtraConfig = append(vm.Config.ExtraConfig, &types.OptionValue{Key: "disk.EnableUUID", Value: "TRUE"})
		}
		for _, d := range vm.Config.Hardware.Device {
			disk, ok := d.(*types.VirtualDisk)
			if !ok {
				continue
			}
			if b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok && b.Uuid == "" {
				b.Uuid = esxDiskUUID()
			}
		}
	}
}

// esxDiskUUID is a random UUID in the form ESXi gives VMDKs (6000C29x-…).
func esxDiskUUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		log.Fatal(err)
	}
	h := fmt.Sprintf("6000C29%x", b)[:32]
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

// addNas mounts the NFS-type datastores (each backed by a local directory) on their hosts.
func addNas(u *url.URL, root string) error {
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		return err
	}
	defer c.Logout(ctx)
	finder := find.NewFinder(c.Client, true)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return err
	}
	finder.SetDatacenter(dc)
	for _, n := range nasDatastores {
		dir := filepath.Join(root, n.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		host, err := finder.HostSystem(ctx, n.host)
		if err != nil {
			return err
		}
		dss, err := host.ConfigManager().DatastoreSystem(ctx)
		if err != nil {
			return err
		}
		if _, err := dss.CreateNasDatastore(ctx, types.HostNasVolumeSpec{
			RemoteHost: "nfs.example.test",
			RemotePath: "/export/" + n.name,
			LocalPath:  dir,
			AccessMode: n.accessMode,
			Type:       n.fsType,
		}); err != nil {
			return err
		}
	}
	return nil
}

// rebuildMounts fills Datastore.host from the hosts' datastore lists (vcsim records only the last
// host that mounted a datastore, and none for NAS ones), with each mount's access mode.
func rebuildMounts() {
	mode := map[string]string{}
	for _, n := range nasDatastores {
		mode[n.name+"@"+n.host] = n.accessMode
	}
	mounts := map[types.ManagedObjectReference][]types.DatastoreHostMount{}
	for _, e := range simulator.Map.All("HostSystem") {
		h := e.(*simulator.HostSystem)
		for _, ref := range h.Datastore {
			ds, ok := simulator.Map.Get(ref).(*simulator.Datastore)
			if !ok {
				continue
			}
			access := mode[ds.Name+"@"+h.Name]
			if access == "" {
				access = string(types.HostMountModeReadWrite)
			}
			mounts[ref] = append(mounts[ref], types.DatastoreHostMount{
				Key: h.Self,
				MountInfo: types.HostMountInfo{
					Path:       ds.Info.GetDatastoreInfo().Url,
					AccessMode: access,
					Mounted:    types.NewBool(true),
					Accessible: types.NewBool(true),
				},
			})
		}
	}
	for ref, m := range mounts {
		simulator.Map.Get(ref).(*simulator.Datastore).Host = m
	}
}

// pagingCollector is the simulator's PropertyCollector with RetrievePropertiesEx paged by
// options.maxObjects, and with datastores hidden from sessions that may not see them
// (accounts.go). The simulator makes one instance per session (reflect.New of this type).
type pagingCollector struct {
	simulator.PropertyCollector
	pageMu  sync.Mutex
	pending map[string]pendingPage
	seq     int
}

type pendingPage struct {
	objects []types.ObjectContent
	max     int32
}

func (pc *pagingCollector) page(objects []types.ObjectContent, max int32) types.RetrieveResult {
	if max <= 0 || len(objects) <= int(max) {
		return types.RetrieveResult{Objects: objects}
	}
	pc.pageMu.Lock()
	defer pc.pageMu.Unlock()
	if pc.pending == nil {
		pc.pending = map[string]pendingPage{}
	}
	pc.seq++
	token := strconv.Itoa(pc.seq)
	pc.pending[token] = pendingPage{objects: objects[max:], max: max}
	return types.RetrieveResult{Token: token, Objects: objects[:max]}
}

func (pc *pagingCollector) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	body := pc.PropertyCollector.RetrievePropertiesEx(ctx, r).(*methods.RetrievePropertiesExBody)
	if body.Res == nil || body.Res.Returnval == nil {
		return body
	}
	res := pc.page(visibleTo(ctx, body.Res.Returnval.Objects), r.Options.MaxObjects)
	body.Res.Returnval = &res
	return body
}

func (pc *pagingCollector) RetrieveProperties(ctx *simulator.Context, r *types.RetrieveProperties) soap.HasFault {
	body := &methods.RetrievePropertiesBody{}
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, &types.RetrievePropertiesEx{This: r.This, SpecSet: r.SpecSet}).(*methods.RetrievePropertiesExBody)
	if res.Fault_ != nil {
		body.Fault_ = res.Fault_
		return body
	}
	body.Res = &types.RetrievePropertiesResponse{}
	if res.Res != nil && res.Res.Returnval != nil {
		body.Res.Returnval = visibleTo(ctx, res.Res.Returnval.Objects)
	}
	return body
}

func (pc *pagingCollector) ContinueRetrievePropertiesEx(ctx *simulator.Context, r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := &methods.ContinueRetrievePropertiesExBody{}
	pc.pageMu.Lock()
	rest, ok := pc.pending[r.Token]
	delete(pc.pending, r.Token)
	pc.pageMu.Unlock()
	if !ok {
		body.Fault_ = simulator.Fault("unknown token "+r.Token, &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	// The rest comes in pages of the same size as the first.
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: pc.page(rest.objects, rest.max)}
	return body
}

func (pc *pagingCollector) CancelRetrievePropertiesEx(ctx *simulator.Context, r *types.CancelRetrievePropertiesEx) soap.HasFault {
	pc.pageMu.Lock()
	delete(pc.pending, r.Token)
	pc.pageMu.Unlock()
	return &methods.CancelRetrievePropertiesExBody{Res: &types.CancelRetrievePropertiesExResponse{}}
}
