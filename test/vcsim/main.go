// Command vcsim starts VMware's vCenter simulator (govmomi, from Debian's sources) with the model
// Boomerang's tests use, on 127.0.0.1 and a port the OS chooses, and prints one JSON line
// {url, username, password, certPem, thumbprint} when it is ready. SIGINT/SIGTERM stop it and
// remove its datastore directories.
package main

import (
	"context"
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

const (
	username = "boomerang"
	password = "vcsim-password"
)

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
	// vcsim 0.24 ignores maxObjects and has no ContinueRetrievePropertiesEx: page its results as
	// vCenter does, so clients' token handling is exercised.
	for _, ref := range []types.ManagedObjectReference{{Type: "PropertyCollector", Value: "propertyCollector"}} {
		simulator.Map.Put(&pagingCollector{PropertyCollector: simulator.PropertyCollector{PropertyCollector: mo.PropertyCollector{Self: ref}}})
	}
	model.Service.TLS = new(tls.Config)
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(username, password)}
	server := model.Service.NewServer()

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
	if err := addNfs(server.URL, filepath.Join(nfsDir, "nfs-ds")); err != nil {
		log.Print(err)
		stop(1)
	}

	cert := server.Certificate()
	sum := sha1.Sum(cert.Raw)
	hexes := make([]string, len(sum))
	for i, b := range sum {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	u := *server.URL
	u.User = nil
	line, _ := json.Marshal(map[string]string{
		"url":        u.String(),
		"username":   username,
		"password":   password,
		"certPem":    string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		"thumbprint": strings.Join(hexes, ":"),
	})
	fmt.Println(string(line))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	stop(0)
}

// addNfs mounts an NFS datastore (backed by a local directory) on the first host.
func addNfs(u *url.URL, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
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
	hosts, err := finder.HostSystemList(ctx, "*")
	if err != nil {
		return err
	}
	dss, err := hosts[0].ConfigManager().DatastoreSystem(ctx)
	if err != nil {
		return err
	}
	_, err = dss.CreateNasDatastore(ctx, types.HostNasVolumeSpec{
		RemoteHost: "nfs.example.test",
		RemotePath: "/export/boomerang",
		LocalPath:  dir,
		AccessMode: string(types.HostMountModeReadWrite),
		Type:       string(types.HostFileSystemVolumeFileSystemTypeNFS),
	})
	return err
}

// pagingCollector is the simulator's PropertyCollector with RetrievePropertiesEx paged by
// options.maxObjects. The simulator makes one instance per session (reflect.New of this type).
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
	res := pc.page(body.Res.Returnval.Objects, r.Options.MaxObjects)
	body.Res.Returnval = &res
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
