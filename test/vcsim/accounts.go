package main

// Accounts and their privileges. vcsim 0.24 stores roles and permissions but never enforces them
// (any user may power VMs off, HasPrivilegeOnEntity says yes to everything), and it accepts a
// single user name. This file enforces what Boomerang's tests need, the way vCenter does:
//   - Login accepts exactly the model's accounts (anything else is InvalidLogin);
//   - a ReadOnly account (role privileges System.Anonymous, System.View, System.Read) gets a
//     NoPermission fault for every method that changes something (accountFilter, in front of the
//     SOAP handler: the simulator dispatches methods to model objects by reflection, so there is no
//     per-method hook to wrap);
//   - it does not see datastores (the PropertyCollector leaves them out of its results, as vCenter
//     leaves out objects the user holds no permission on), though hosts and VMs still refer to them;
//   - AuthorizationManager.HasPrivilegeOnEntity/HasPrivilegeOnEntities/FetchUserPrivilegeOnEntities
//     answer from the account's role.
// WaitForUpdates and other views are not filtered: Boomerang does not use them for discovery.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io/ioutil"
	"net/http"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type account struct {
	name, password string
	readOnly       bool
}

var (
	adminUser    = account{name: "boomerang", password: "vcsim-password"}
	readOnlyUser = account{name: "boomerang-readonly", password: "vcsim-readonly-password", readOnly: true}
	accounts     = []account{adminUser, readOnlyUser}
)

// readOnlyPrivileges are the privileges of vSphere's ReadOnly role.
var readOnlyPrivileges = map[string]bool{"System.Anonymous": true, "System.View": true, "System.Read": true}

// readMethods are what a ReadOnly account may call: logging in and out, reading properties and
// events, views, privilege and licence queries.
var readMethods = map[string]bool{
	"RetrieveServiceContent": true, "Login": true, "Logout": true, "CurrentTime": true, "SessionIsActive": true,
	"RetrieveProperties": true, "RetrievePropertiesEx": true, "ContinueRetrievePropertiesEx": true, "CancelRetrievePropertiesEx": true,
	"CreateFilter": true, "DestroyPropertyFilter": true, "WaitForUpdates": true, "WaitForUpdatesEx": true, "CheckForUpdates": true,
	"CancelWaitForUpdates": true, "CreatePropertyCollector": true, "DestroyPropertyCollector": true,
	"CreateContainerView": true, "CreateListView": true, "CreateInventoryView": true, "DestroyView": true,
	"HasPrivilegeOnEntity": true, "HasPrivilegeOnEntities": true, "HasUserPrivilegeOnEntities": true, "FetchUserPrivilegeOnEntities": true,
	"RetrieveEntityPermissions": true, "RetrieveAllPermissions": true, "RetrieveRolePermissions": true,
	"QueryAssignedLicenses": true, "QueryEvents": true, "CreateCollectorForEvents": true, "ReadNextEvents": true,
	"ReadPreviousEvents": true, "ResetCollector": true, "RewindCollector": true, "DestroyCollector": true,
	"FindByUuid": true, "FindAllByUuid": true, "FindByInventoryPath": true, "FindByDatastorePath": true, "FindChild": true,
	"FindByIp": true, "FindByDnsName": true, "QueryOptions": true, "RetrieveUserGroups": true,
}

// privilegeFor names the privilege a write needs, for the NoPermission fault.
var privilegeFor = map[string]string{
	"PowerOnVM_Task": "VirtualMachine.Interact.PowerOn", "PowerOffVM_Task": "VirtualMachine.Interact.PowerOff",
	"ShutdownGuest": "VirtualMachine.Interact.PowerOff", "ResetVM_Task": "VirtualMachine.Interact.Reset",
	"ReconfigVM_Task": "VirtualMachine.Config.Settings", "CreateVM_Task": "VirtualMachine.Inventory.Create",
	"Destroy_Task": "VirtualMachine.Inventory.Delete", "CreateSnapshot_Task": "VirtualMachine.State.CreateSnapshot",
	"RemoveAllSnapshots_Task": "VirtualMachine.State.RemoveSnapshot", "RemoveSnapshot_Task": "VirtualMachine.State.RemoveSnapshot",
	"ConsolidateVMDisks_Task": "VirtualMachine.State.RemoveSnapshot", "RelocateVM_Task": "Resource.ColdMigrate",
	"MakeDirectory": "Datastore.FileManagement", "CreateVirtualDisk_Task": "Datastore.FileManagement",
	"DeleteDatastoreFile_Task": "Datastore.DeleteFile", "SearchDatastore_Task": "Datastore.Browse",
	"SearchDatastoreSubFolders_Task": "Datastore.Browse", "UpdateAssignedLicense": "Global.Licenses",
}

// sessions maps session keys (the vmware_soap_session cookie) to the account that logged in.
var sessions = struct {
	sync.Mutex
	user map[string]account
}{user: map[string]account{}}

func sessionAccount(key string) (account, bool) {
	sessions.Lock()
	defer sessions.Unlock()
	a, ok := sessions.user[key]
	return a, ok
}

func findAccount(name string) (account, bool) {
	for _, a := range accounts {
		if a.name == name {
			return a, true
		}
	}
	return account{}, false
}

// soapCall is what accountFilter reads of a request: the method, its _this and Login's credentials.
type soapCall struct {
	method   string
	this     types.ManagedObjectReference
	userName string
	password string
}

func parseCall(body []byte) (soapCall, bool) {
	var env struct {
		Body struct {
			Call struct {
				XMLName  xml.Name
				This     types.ManagedObjectReference `xml:"_this"`
				UserName string                       `xml:"userName"`
				Password string                       `xml:"password"`
			} `xml:",any"`
		} `xml:"Body"`
	}
	if err := xml.Unmarshal(body, &env); err != nil || env.Body.Call.XMLName.Local == "" {
		return soapCall{}, false
	}
	c := env.Body.Call
	return soapCall{method: c.XMLName.Local, this: c.This, userName: c.UserName, password: c.Password}, true
}

func writeFault(w http.ResponseWriter, message, detail string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	var msg bytes.Buffer
	_ = xml.EscapeText(&msg, []byte(message))
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring><detail>%s</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>`, msg.String(), detail)
}

func escaped(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// loginRecorder notes the session cookie a successful Login sets, when the answer starts.
type loginRecorder struct {
	http.ResponseWriter
	user  account
	noted bool
}

func (r *loginRecorder) note(code int) {
	if r.noted {
		return
	}
	r.noted = true
	if code != http.StatusOK {
		return
	}
	for _, c := range (&http.Response{Header: r.Header()}).Cookies() {
		if c.Name == soap.SessionCookieName {
			sessions.Lock()
			sessions.user[c.Value] = r.user
			sessions.Unlock()
		}
	}
}

func (r *loginRecorder) WriteHeader(code int) {
	r.note(code)
	r.ResponseWriter.WriteHeader(code)
}

func (r *loginRecorder) Write(b []byte) (int, error) {
	r.note(http.StatusOK)
	return r.ResponseWriter.Write(b)
}

// accountFilter checks Login credentials and refuses writes to ReadOnly sessions.
func accountFilter(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sdk") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := ioutil.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = ioutil.NopCloser(bytes.NewReader(body))
		call, ok := parseCall(body)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		switch call.method {
		case "Login":
			a, known := findAccount(call.userName)
			if !known || a.password != call.password {
				writeFault(w, "Cannot complete login due to an incorrect user name or password.", `<InvalidLoginFault xsi:type="InvalidLogin" xmlns="urn:vim25"></InvalidLoginFault>`)
				return
			}
			next.ServeHTTP(&loginRecorder{ResponseWriter: w, user: a}, r)
			return
		case "LoginByToken", "LoginExtensionByCertificate", "LoginExtensionBySubjectName", "LoginBySSPI", "CloneSession", "ImpersonateUser":
			writeFault(w, "Cannot complete login: only user name and password are accepted here.", `<InvalidLoginFault xsi:type="InvalidLogin" xmlns="urn:vim25"></InvalidLoginFault>`)
			return
		}
		cookie, err := r.Cookie(soap.SessionCookieName)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		a, known := sessionAccount(cookie.Value)
		if known && call.method == "Logout" {
			sessions.Lock()
			delete(sessions.user, cookie.Value)
			sessions.Unlock()
		}
		if known && a.readOnly && !readMethods[call.method] {
			priv := privilegeFor[call.method]
			if priv == "" {
				// Only the methods Boomerang calls name their own privilege.
				priv = "Global.Settings"
			}
			writeFault(w, fmt.Sprintf("Permission to perform this operation was denied. Required privilege '%s' on managed object %s.", priv, call.this.Value),
				fmt.Sprintf(`<NoPermissionFault xsi:type="NoPermission" xmlns="urn:vim25"><object type="%s">%s</object><privilegeId>%s</privilegeId></NoPermissionFault>`, escaped(call.this.Type), escaped(call.this.Value), escaped(priv)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readOnlySession tells whether the calling session belongs to a ReadOnly account.
func readOnlySession(ctx *simulator.Context) bool {
	if ctx == nil || ctx.Session == nil {
		return false
	}
	a, ok := findAccount(ctx.Session.UserName)
	return ok && a.readOnly
}

// visibleTo leaves datastores out of what a ReadOnly session retrieves.
func visibleTo(ctx *simulator.Context, objects []types.ObjectContent) []types.ObjectContent {
	if !readOnlySession(ctx) {
		return objects
	}
	out := make([]types.ObjectContent, 0, len(objects))
	for _, o := range objects {
		if o.Obj.Type != "Datastore" {
			out = append(out, o)
		}
	}
	return out
}

// authorizationManager answers privilege queries from the account's role.
type authorizationManager struct {
	*simulator.AuthorizationManager
}

func installAuthorization(content types.ServiceContent) {
	orig := simulator.Map.Get(*content.AuthorizationManager).(*simulator.AuthorizationManager)
	simulator.Map.Put(&authorizationManager{AuthorizationManager: orig})
}

func granted(a account, priv string) bool {
	return !a.readOnly || readOnlyPrivileges[priv]
}

// accountOf is the account of the session named in a request, or else the caller's.
func accountOf(ctx *simulator.Context, sessionID string) account {
	if a, ok := sessionAccount(sessionID); ok {
		return a
	}
	if ctx.Session != nil {
		if a, ok := findAccount(ctx.Session.UserName); ok {
			return a
		}
	}
	return readOnlyUser
}

func (m *authorizationManager) HasPrivilegeOnEntity(ctx *simulator.Context, req *types.HasPrivilegeOnEntity) soap.HasFault {
	a := accountOf(ctx, req.SessionId)
	res := make([]bool, len(req.PrivId))
	for i, p := range req.PrivId {
		res[i] = granted(a, p)
	}
	return &methods.HasPrivilegeOnEntityBody{Res: &types.HasPrivilegeOnEntityResponse{Returnval: res}}
}

func (m *authorizationManager) HasPrivilegeOnEntities(ctx *simulator.Context, req *types.HasPrivilegeOnEntities) soap.HasFault {
	a := accountOf(ctx, req.SessionId)
	var res []types.EntityPrivilege
	for _, e := range req.Entity {
		ep := types.EntityPrivilege{Entity: e}
		for _, p := range req.PrivId {
			ep.PrivAvailability = append(ep.PrivAvailability, types.PrivilegeAvailability{PrivId: p, IsGranted: granted(a, p)})
		}
		res = append(res, ep)
	}
	return &methods.HasPrivilegeOnEntitiesBody{Res: &types.HasPrivilegeOnEntitiesResponse{Returnval: res}}
}

func (m *authorizationManager) FetchUserPrivilegeOnEntities(ctx *simulator.Context, req *types.FetchUserPrivilegeOnEntities) soap.HasFault {
	a, ok := findAccount(req.UserName)
	if !ok {
		a = readOnlyUser
	}
	all := m.AuthorizationManager.FetchUserPrivilegeOnEntities(req).(*methods.FetchUserPrivilegeOnEntitiesBody)
	for i := range all.Res.Returnval {
		var kept []string
		for _, p := range all.Res.Returnval[i].Privileges {
			if granted(a, p) {
				kept = append(kept, p)
			}
		}
		all.Res.Returnval[i].Privileges = kept
	}
	return all
}
